"""Files copied into bundles. Each is a standalone script (no ibit_deploy import) the package also imports from."""
