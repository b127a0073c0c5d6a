"""Fake outside services for tests: real servers on 127.0.0.1 speaking the real wire formats."""
