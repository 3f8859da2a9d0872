"""Helpers shared by the test suite: free ports, real child processes on 127.0.0.1, moto's server."""
