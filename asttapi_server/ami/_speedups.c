/* Optional C accelerator for the AMI parser's two hot loops.
 *
 * Pure functions over bytes: no state, no I/O, no reactor. Each one has a
 * pure-Python twin that gives exactly the same answers; the twin is what runs
 * when this module could not be built (no compiler at install time) or when
 * ASTTAPI_PURE_PYTHON=1 is set, and tests/ami/test_speedups.py checks the two
 * against each other on the real captures and on generated streams.
 *
 * scan_blocks  -- framing + event filter of AMIParser._feed_filtered: one pass
 *                 over a buffer (SSE2 where the compiler has it, 16 bytes a
 *                 step; else memchr from line end to line end), giving the
 *                 blocks that may be kept (the 90 % noise is never looked at
 *                 from Python).
 * first_values -- Message.values() before a full decode: the first value of
 *                 each of a few headers (any case), stripped, in one pass over
 *                 the lines of an ASCII block.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static int
is_word(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_';
}

static unsigned char
ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Python's str.strip() whitespace, restricted to ASCII. */
static int
is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* One wanted-name head, as parser._wanted_heads gives it: lower-case
 * ASCII bytes, and whether it is the whole name (then the next byte must not
 * be a word character). */
typedef struct {
    const unsigned char *text;
    Py_ssize_t len;
    int exact;
} head_t;

/* Is the block [s, e) a candidate (may be kept)?  Not a candidate only if it
 * starts with "Event: " and a word character and its name cannot be a wanted
 * one: the same test as the regex in parser._candidates_regex. */
static int
is_candidate(const unsigned char *buf, Py_ssize_t s, Py_ssize_t e, Py_ssize_t end,
             const head_t *heads, Py_ssize_t nheads)
{
    Py_ssize_t i, k;
    if (e - s < 8 || memcmp(buf + s, "Event: ", 7) != 0 || !is_word(buf[s + 7]))
        return 1;
    for (i = 0; i < nheads; i++) {
        const head_t *h = &heads[i];
        Py_ssize_t at = s + 7;
        if (at + h->len > end)
            continue;
        for (k = 0; k < h->len; k++) {
            if (ascii_lower(buf[at + k]) != h->text[k])
                break;
        }
        if (k < h->len)
            continue;
        if (!h->exact || at + h->len >= end || !is_word(buf[at + h->len]))
            return 1;
    }
    return 0;
}

/* The scan's state: blocks start at `block`; `last` is the last separator. */
typedef struct {
    const unsigned char *buf;
    Py_ssize_t end, block, last;
    const head_t *heads;
    Py_ssize_t nheads;
    PyObject *spans;
} scan_t;

/* A "\r\n\r\n" starts at sep: end the current block there unless the
 * separator overlaps the previous one. -1 on a Python error. */
static int
separator(scan_t *st, Py_ssize_t sep)
{
    if (sep < st->block)
        return 0;
    if (is_candidate(st->buf, st->block, sep, st->end, st->heads, st->nheads)) {
        PyObject *a = PyLong_FromSsize_t(st->block), *b = PyLong_FromSsize_t(sep);
        int bad = a == NULL || b == NULL || PyList_Append(st->spans, a) < 0 ||
                  PyList_Append(st->spans, b) < 0;
        Py_XDECREF(a);
        Py_XDECREF(b);
        if (bad)
            return -1;
    }
    st->last = sep;
    st->block = sep + 4;
    return 0;
}

/* From p on, one memchr per line. 1: a bare "\n\n" at or after p; 0: done;
 * -1: a Python error. */
static int
scan_scalar(scan_t *st, Py_ssize_t p)
{
    const unsigned char *buf = st->buf;
    Py_ssize_t end = st->end;
    while (p < end) {
        const unsigned char *q = memchr(buf + p, '\n', (size_t)(end - p));
        Py_ssize_t n;
        if (q == NULL)
            break;
        n = q - buf;
        if (n + 1 < end && buf[n + 1] == '\n')
            return 1;
        /* "\r\n\r\n" with this '\n' second */
        if (n >= 1 && n + 2 < end && buf[n - 1] == '\r' && buf[n + 1] == '\r' && buf[n + 2] == '\n') {
            if (separator(st, n - 1) < 0)
                return -1;
            p = n + 2; /* the separator's second '\n' is looked at too */
            continue;
        }
        p = n + 1;
    }
    return 0;
}

#if defined(__SSE2__)
/* The same answers 16 positions at a time: a mask of the positions where
 * "\r\n\r\n" starts and one of those where "\n\n" starts, from unaligned
 * loads at +0..+3; the few bytes left at the end go to scan_scalar. */
static int
scan_sse2(scan_t *st, Py_ssize_t p)
{
    const unsigned char *buf = st->buf;
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    Py_ssize_t base = p;
    while (base + 19 <= st->end) {
        const unsigned char *at = buf + base;
        __m128i l0 = _mm_loadu_si128((const __m128i *)at);
        __m128i l1 = _mm_loadu_si128((const __m128i *)(at + 1));
        __m128i lf0 = _mm_cmpeq_epi8(l0, lf), lf1 = _mm_cmpeq_epi8(l1, lf);
        __m128i cr0 = _mm_cmpeq_epi8(l0, cr);
        int bare = _mm_movemask_epi8(_mm_and_si128(lf0, lf1));
        int seps;
        if (bare)
            return 1;
        seps = _mm_movemask_epi8(_mm_and_si128(cr0, lf1));
        if (seps) {
            __m128i l2 = _mm_loadu_si128((const __m128i *)(at + 2));
            __m128i l3 = _mm_loadu_si128((const __m128i *)(at + 3));
            seps &= _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(l2, cr), _mm_cmpeq_epi8(l3, lf)));
            while (seps) {
                if (separator(st, base + __builtin_ctz((unsigned)seps)) < 0)
                    return -1;
                seps &= seps - 1;
            }
        }
        base += 16;
    }
    return scan_scalar(st, base);
}
#endif

static PyObject *
scan_impl(PyObject *args, int simd)
{
    Py_buffer view;
    Py_ssize_t first, nheads, i;
    PyObject *heads_obj, *result = NULL;
    head_t heads_small[16];
    head_t *heads = heads_small;
    scan_t st;
    int found;

    if (!PyArg_ParseTuple(args, "y*nO!:scan_blocks", &view, &first, &PyTuple_Type, &heads_obj))
        return NULL;
    st.spans = NULL;
    nheads = PyTuple_GET_SIZE(heads_obj);
    if (nheads > 16) {
        heads = PyMem_New(head_t, nheads);
        if (heads == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (i = 0; i < nheads; i++) {
        PyObject *pair = PyTuple_GET_ITEM(heads_obj, i);
        PyObject *text;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(text = PyTuple_GET_ITEM(pair, 0))) {
            PyErr_SetString(PyExc_TypeError, "heads: a tuple of (bytes, bool) pairs");
            goto done;
        }
        heads[i].text = (const unsigned char *)PyBytes_AS_STRING(text);
        heads[i].len = PyBytes_GET_SIZE(text);
        heads[i].exact = PyObject_IsTrue(PyTuple_GET_ITEM(pair, 1));
        if (heads[i].exact < 0)
            goto done;
    }
    if (first < 0 || first > view.len) {
        PyErr_SetString(PyExc_ValueError, "first is outside the buffer");
        goto done;
    }
    st.buf = (const unsigned char *)view.buf;
    st.end = view.len;
    st.block = first;
    st.last = -1;
    st.heads = heads;
    st.nheads = nheads;
    st.spans = PyList_New(0);
    if (st.spans == NULL)
        goto done;
    /* From first - 1: a bare "\n\n" across first is seen too. */
#if defined(__SSE2__)
    found = simd ? scan_sse2(&st, first > 0 ? first - 1 : 0) : scan_scalar(&st, first > 0 ? first - 1 : 0);
#else
    (void)simd;
    found = scan_scalar(&st, first > 0 ? first - 1 : 0);
#endif
    if (found < 0)
        goto done;
    if (found > 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* As bytes.rfind would: a separator overlapping the last one
       ("\r\n\r\n\r\n" at the end) ends the framed part, so the extra blank
       line is not kept as the start of the tail. */
    if (st.last >= 0 && st.last + 6 <= st.end && st.buf[st.last + 4] == '\r' && st.buf[st.last + 5] == '\n')
        st.last += 2;
    result = Py_BuildValue("(On)", st.spans, st.last);
done:
    Py_XDECREF(st.spans);
    if (heads != heads_small)
        PyMem_Free(heads);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(scan_blocks_doc,
"scan_blocks(buf, first, heads) -> (spans, last) | None\n\n"
"Frame buf from offset first (a block start) on \"\\r\\n\\r\\n\", left to right,\n"
"non-overlapping, as bytes.split does. spans is a flat list [s0, e0, s1, e1, ...]\n"
"of the blocks that may be kept (see parser._wanted_heads; heads is a tuple\n"
"of (lower-case ASCII name head, exact) pairs); e is the offset of the block's\n"
"separator. last is the offset of the last separator (-1 if none), as\n"
"buf.rfind(b\"\\r\\n\\r\\n\") gives it; what follows it is the unfinished tail.\n"
"None if there is a bare \"\\n\\n\" anywhere from first - 1 on: the caller must\n"
"use its slow path.");

static PyObject *
scan_blocks(PyObject *self, PyObject *args)
{
    return scan_impl(args, 1);
}

PyDoc_STRVAR(scan_blocks_scalar_doc,
"_scan_blocks_scalar(buf, first, heads): scan_blocks without SIMD (for the tests:\n"
"what runs on machines without SSE2).");

static PyObject *
scan_blocks_scalar(PyObject *self, PyObject *args)
{
    return scan_impl(args, 0);
}

PyDoc_STRVAR(first_values_doc,
"first_values(raw, keys) -> list[str | None] | None\n\n"
"For each key (lower-case ASCII bytes, no colon), the value of the first line\n"
"of raw that starts with that key in any case followed by \":\": the rest of\n"
"the line up to its \"\\n\", stripped as str.strip() does. None if raw is not\n"
"pure ASCII (the caller decodes it in full).");

static PyObject *
first_values(PyObject *self, PyObject *args)
{
    Py_buffer view;
    PyObject *keys, *out = NULL;
    Py_ssize_t nkeys, missing, i;

    if (!PyArg_ParseTuple(args, "y*O!:first_values", &view, &PyTuple_Type, &keys))
        return NULL;
    nkeys = PyTuple_GET_SIZE(keys);
    for (i = 0; i < nkeys; i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(keys, i))) {
            PyErr_SetString(PyExc_TypeError, "keys: a tuple of bytes");
            goto done;
        }
    }
    {
        const unsigned char *buf = (const unsigned char *)view.buf;
        Py_ssize_t end = view.len, line = 0;
        unsigned char any = 0;
        for (i = 0; i < end; i++) /* no early exit: the compiler vectorises it */
            any |= buf[i];
        if (any & 0x80) {
            out = Py_NewRef(Py_None);
            goto done;
        }
        out = PyList_New(nkeys);
        if (out == NULL)
            goto done;
        for (i = 0; i < nkeys; i++)
            PyList_SET_ITEM(out, i, Py_NewRef(Py_None));
        missing = nkeys;
        while (line <= end && missing > 0) {
            const unsigned char *nl = memchr(buf + line, '\n', (size_t)(end - line));
            Py_ssize_t stop = nl ? nl - buf : end;
            const unsigned char *colon = memchr(buf + line, ':', (size_t)(stop - line));
            if (colon != NULL) {
                Py_ssize_t klen = colon - (buf + line);
                for (i = 0; i < nkeys; i++) {
                    PyObject *key = PyTuple_GET_ITEM(keys, i);
                    const unsigned char *kt;
                    Py_ssize_t k;
                    if (PyList_GET_ITEM(out, i) != Py_None || PyBytes_GET_SIZE(key) != klen)
                        continue;
                    kt = (const unsigned char *)PyBytes_AS_STRING(key);
                    for (k = 0; k < klen; k++) {
                        if (ascii_lower(buf[line + k]) != kt[k])
                            break;
                    }
                    if (k == klen) {
                        Py_ssize_t a = line + klen + 1, b = stop;
                        PyObject *value;
                        while (a < b && is_space(buf[a]))
                            a++;
                        while (b > a && is_space(buf[b - 1]))
                            b--;
                        value = PyUnicode_DecodeLatin1((const char *)buf + a, b - a, NULL);
                        if (value == NULL) {
                            Py_CLEAR(out);
                            goto done;
                        }
                        Py_DECREF(PyList_GET_ITEM(out, i)); /* None */
                        PyList_SET_ITEM(out, i, value);
                        missing--;
                    }
                }
            }
            if (nl == NULL)
                break;
            line = stop + 1;
        }
    }
done:
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"scan_blocks", scan_blocks, METH_VARARGS, scan_blocks_doc},
    {"_scan_blocks_scalar", scan_blocks_scalar, METH_VARARGS, scan_blocks_scalar_doc},
    {"first_values", first_values, METH_VARARGS, first_values_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "asttapi_server.ami._speedups",
    "C twins of the AMI parser's two hot loops (see parser.py and message.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
