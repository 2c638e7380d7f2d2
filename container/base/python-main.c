/* The runtime image's /usr/bin/python (container/base/build-bases.sh, PY_FROM=debian):
 * CPython's own main (Py_BytesMain), with the built-in hash modules other than blake2 taken
 * out of the table of built-in modules before the interpreter starts. That is what
 * configuring with --with-builtin-hashlib-hashes=blake2 does; here it applies to Debian's
 * libpython, whose table has _md5, _sha1, _sha2 and _sha3, so hashlib has nothing to fall
 * back on when OpenSSL's FIPS provider refuses MD5. */
