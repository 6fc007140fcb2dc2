"""Running a data scientist's job module: its context and the driver entry program."""
