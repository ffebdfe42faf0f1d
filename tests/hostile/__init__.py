"""The hostile-input corpus: generators and the case registry (see cases.py); run by tests/test_hostile.py."""
