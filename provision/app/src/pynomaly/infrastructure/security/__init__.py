"""Password hashing (stdlib PBKDF2) and JWT access tokens."""
