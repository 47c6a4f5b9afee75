"""CLI command modules. Each module defines click commands and imports only light modules at import
time; heavy dependencies (torch, transformers, altair, ray) are imported inside the command
bodies."""
