"""Tests of ``cofi_lightning.data``; a package so its conftest cannot shadow tests/conftest."""
