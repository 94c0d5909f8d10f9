"""Tests of pyrtok.quantize."""
