"""Reference deployment driver: `python -m provision up|down|status|drift|heal`."""
