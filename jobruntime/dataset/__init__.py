"""Encrypted datasets at rest: Parquet Modular Encryption files plus a signed manifest.

Each version of a dataset is a directory of standard PME Parquet files (AES_GCM_V1,
encrypted footers, double wrapping under the dataset master key) and a manifest
that lists them and is authenticated with a key derived from the master key.
"""
