"""Keys as a service over the database: which key authenticates what (`usage`, `toolkit keys
status`) and moving every value to the current key (`rotation`, `toolkit keys rotate`).

The cryptography itself — the format, the keyring, Secret — is `toolkit.crypto`, which knows
nothing of databases; these modules read and write rows through `toolkit.db.installations`.
"""
