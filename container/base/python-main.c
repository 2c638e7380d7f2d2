/* The runtime image's /usr/bin/python (container/base/build-bases.sh, PY_FROM=debian):
 * CPython's own main (Py_BytesMain), with the built-in hash modules other than blake2 taken
 * out of the table of built-in modules before the interpreter starts. That is what
 * configuring with --with-builtin-hashlib-hashes=blake2 does; here it applies to Debian's
 * libpython, whose table has _md5, _sha1, _sha2 and _sha3, so hashlib has nothing to fall
 * back on when OpenSSL's FIPS provider refuses MD5. */
#include <Python.h>
#include <string.h>

static const char *const DROPPED[] = {"_md5", "_sha1", "_sha2", "_sha3", NULL};

static int dropped(const char *name) {
    for (const char *const *d = DROPPED; *d; d++) {
        if (strcmp(name, *d) == 0) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    static struct _inittab table[512];
    size_t n = 0;
    for (struct _inittab *p = PyImport_Inittab; p->name; p++) {
        if (dropped(p->name)) continue;
        if (n + 1 >= sizeof table / sizeof table[0]) return 120;
        table[n++] = *p;
    }
    table[n].name = NULL;
    table[n].initfunc = NULL;
    PyImport_Inittab = table;
    return Py_BytesMain(argc, argv);
}
