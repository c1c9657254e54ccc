/* json.h — RFC 8259 JSON parser into a read-only, arena-allocated tree.
 *
 * One bb_json_doc owns every node and string of a parse; nodes are valid until
 * bb_json_doc_destroy. The input is not kept: it need not be NUL-terminated and
 * may be freed or unmapped after the parse.
 *
 * Accepted input: UTF-8 text (a leading UTF-8 byte-order mark is skipped), any
 * value at the top level, nesting up to BB_JSON_MAX_DEPTH. Strings are decoded
 * to UTF-8 (\uXXXX escapes included, surrogate pairs joined); raw control
 * characters, invalid UTF-8, unpaired surrogates, duplicate keys in one object,
 * leading zeros, "+1", ".5", "1.", NaN/Infinity, comments and trailing commas
 * are rejected. Errors are BB_ERR_FORMAT with a message
 * "<what>:<line>:<column>: expected <what was expected>, found <what was there>"
 * (lines and columns start at 1; columns count bytes).
 *
 * Objects keep their members in file order. Lookup by key is O(1) on average:
 * objects of more than a few members get a hash index at parse time (a
 * tokenizer.json vocabulary of 128k entries is one such object).
 *
 * Nodes are never NULL inside a tree; accessors accept NULL (a missing value)
 * and then return the "absent" answer stated for each, so lookups chain:
 * bb_json_get(bb_json_get(root, "a"), "b"). Nothing here is collective. */
#ifndef BB_IO_JSON_H
#define BB_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define BB_JSON_MAX_DEPTH 256

typedef enum {
    BB_JSON_MISSING = 0, /* bb_json_type(NULL): no such value */
    BB_JSON_NULL,
    BB_JSON_BOOL,
    BB_JSON_NUMBER,
    BB_JSON_STRING,
    BB_JSON_ARRAY,
    BB_JSON_OBJECT,
    BB_JSON_TYPE_COUNT
} bb_json_kind;

typedef struct bb_json bb_json;
typedef struct bb_json_doc bb_json_doc;

/* Parse text[0, len). `what` names the input in error messages (a file name);
 * it is copied. On error *out is NULL and nothing is left allocated. */
bb_status bb_json_parse(const char *text, size_t len, const char *what, bb_json_doc **out);
/* NULL-safe; frees the whole tree and nulls *doc. */
void bb_json_doc_destroy(bb_json_doc **doc);

const bb_json *bb_json_root(const bb_json_doc *doc); /* never NULL for a parsed doc */

bb_json_kind bb_json_type(const bb_json *v);
/* "missing", "null", "a boolean", "a number", "a string", "an array", "an object" */
const char *bb_json_type_name(bb_json_kind t);
/* Where the value starts in the input (1-based; 0 for NULL). */
uint32_t bb_json_line(const bb_json *v);
uint32_t bb_json_col(const bb_json *v);

/* Arrays: element count; objects: member count; 0 for anything else. */
size_t bb_json_len(const bb_json *v);
/* Element i of an array or the value of member i of an object; NULL if out of range. */
const bb_json *bb_json_at(const bb_json *v, size_t i);
/* Key of member i of an object (NUL-terminated UTF-8; *len, if given, is its
 * byte length, which differs from strlen only for keys holding \u0000). NULL
 * if v is not an object or i is out of range. */
const char *bb_json_key_at(const bb_json *v, size_t i, size_t *len);

/* Value of the member named key, NULL if v is not an object or has no such
 * member. bb_json_get_n takes a key of len bytes (may hold NUL bytes). */
const bb_json *bb_json_get(const bb_json *obj, const char *key);
const bb_json *bb_json_get_n(const bb_json *obj, const char *key, size_t len);
/* Member index of key in obj, -1 if absent or obj is not an object. */
long bb_json_find(const bb_json *obj, const char *key, size_t len);

/* String value (NUL-terminated UTF-8), NULL if v is not a string; *len, if
 * given, gets its byte length (0 when v is not a string). */
const char *bb_json_str(const bb_json *v, size_t *len);
/* Number as double (the nearest one; integers beyond 2^53 are rounded); NaN if
 * v is not a number. */
double bb_json_num(const bb_json *v);
/* 1 if v is a number whose exact value is an integer in int64 range: written
 * as an integer ("-12"), or written with a fraction or exponent whose double
 * value is integral and at most 2^53 in magnitude ("2.0", "1e3"). */
int bb_json_is_int(const bb_json *v);
/* That integer, exactly. Errors: BB_ERR_FORMAT ("line L, column C: expected an
 * integer, found ...") when bb_json_is_int(v) is 0; *out is then 0. */
bb_status bb_json_int64(const bb_json *v, int64_t *out);
/* 1 for true, 0 for false, -1 if v is not a boolean. */
int bb_json_bool(const bb_json *v);

#endif
