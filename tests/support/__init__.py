"""Independent reference implementations and helpers shared by the tests."""
