"""Property-based fuzzing of every parser of untrusted input (issue 15, "Fuzzing")."""
