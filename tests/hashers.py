from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """The production algorithm with few iterations, so creating users in tests
    is fast. The iteration count is stored in each hash, so any process with
    the default hashers still verifies these passwords."""

    iterations = 1000
