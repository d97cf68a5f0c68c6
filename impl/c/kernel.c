/*
 * kernel.c: a demand-paging kernel for pagingcheck, in C99 with libc alone.
 *
 * It is a program that speaks pagingcheck's process protocol, version 1
 * (docs/protocol.md): one JSON request per line on stdin, one reply per
 * request on stdout, and, during a call, the hardware port's operations on
 * stdout (those that return a value wait for the answer on stdin). The
 * machine stays in pagingcheck; this program only knows what the protocol
 * tells it. Build and check it:
 *
 *     cc -std=c99 -Wall -Wextra -O2 -o kernel kernel.c
 *     pagingcheck validate --exec ./kernel --config conformance.yaml
 *
 * Built with -DBUG_STALE_TLB it is its buggy twin: eviction clears the
 * victim's PTE but leaves its TLB entry, so the process can go on reaching
 * the frame after it was given to another page. The checker finds it
 * (tlb_agrees, or busy_frame_exclusive while the frame is being written).
 *
 * Read it as a starting point for a kernel of your own. What it supports:
 *
 *  - page tables: linear, and multi-level (linear is the one-level case of
 *    the same tree; `pagingcheck validate` always explores the `pair`
 *    reference configuration, which is multi-level, so supporting it is what
 *    lets validate pass). Every table a process can ever need is built at
 *    spawn, so a page fault never allocates kernel memory and can never run
 *    out of it.
 *  - TLB: refilled by the hardware walker, tagged or untagged (an untagged
 *    TLB is flushed at every address-space switch).
 *  - restart variants: precise, state_register and decode.
 *  - replacement: global FIFO over the frames holding a page.
 *  - processes: private pages only. Each process pages its own copy of its
 *    program's text from the image (text is read-only, so copies are safe);
 *    a program with shared segments is refused at spawn.
 *
 * A configuration it does not support (hashed or inverted tables, a
 * software-refilled TLB, a policy other than fifo, local allocation,
 * prepaging, the cleaner) is refused at hello: a message on stderr and a
 * failed reply, which pagingcheck reports as a program that did not answer
 * hello (exit 2).
 *
 * Design, and why:
 *
 *  - Decide, then perform. spawn builds the page table on a scratch copy of
 *    the kernel region and of the allocator; only when everything fits does
 *    it write memory and take swap slots. A refusal leaves machine and
 *    kernel exactly as they were, which the interface requires.
 *  - Swap: a slot per writable page, reserved at spawn (refused when
 *    short), so an eviction never waits for a slot. Text and data come from
 *    the program's image on the disk; heap and stack start as zeros; a slot
 *    takes its page's contents at the page's first write-back.
 *  - A dirty victim is written back and its frame stays reserved for the
 *    page that evicted it; the page is read in when the write ends. A page
 *    whose frame is busy (written back, or being read) is waited for, never
 *    moved twice.
 *  - Progress. With few frames, naive FIFO can livelock: processes evict
 *    the pages other processes just brought in, before those re-run. So an
 *    instruction is *unfinished* from its first page fault until it
 *    retires; it takes a *ticket* in fault order, and the pages it faulted
 *    in are *pinned* to it. Only the *head* (the unfinished instruction
 *    with the lowest ticket) may take a frame from a page, and never one of
 *    its own pinned pages; the others use free frames or wait. An
 *    instruction touches at most four pages and pagingcheck gives the
 *    machine at least as many user frames as one instruction of the
 *    workload touches, so the head always finds a frame (or one comes free
 *    when a transfer ends), keeps what it faulted in, and retires; then the
 *    next ticket leads. The kernel learns that an instruction retired at
 *    its process's next kernel entry other than a trap of it.
 *  - After a fault served without waiting, only the faulting process is
 *    runnable until it has run its instruction again, as a real trap return
 *    goes straight back to the interrupted process.
 *  - State as a value. `save` answers the whole kernel state, serialised
 *    field by field and hex-encoded; it holds nothing that does not decide
 *    the kernel's future (tickets are renumbered 1..k, FIFO order is a
 *    queue, not load times), so equal states save as equal strings and the
 *    explorer merges them. The copy of physical memory is not part of it:
 *    it belongs to the process (docs/protocol.md).
 *  - Failures. A broken internal rule, or a port operation the checker
 *    refused, ends the call with a `failed` reply naming this file and line
 *    (setjmp/longjmp back to the request loop): the checker reports it as
 *    the kernel's violation, with a trace, and restores a saved state for
 *    the next run.
 *
 * Options: --verbose writes each request's name to stderr (pagingcheck keeps
 * the end of a program's stderr in every trace written for it).
 */

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTOCOL_VERSION 1

/* ------------------------------------------------------------------------- */
/* The hardware's definitions (docs/hardware.md)                             */
/* ------------------------------------------------------------------------- */

/* PTE bits: | pfn (24) | 0 | M | R | U | X | W | Rd | P | */
#define PTE_PRESENT 0x01u
#define PTE_READ 0x02u
#define PTE_WRITE 0x04u
#define PTE_EXEC 0x08u
#define PTE_USER 0x10u
#define PTE_REFERENCED 0x20u
#define PTE_MODIFIED 0x40u
#define PTE_PROT_MASK (PTE_READ | PTE_WRITE | PTE_EXEC | PTE_USER)
#define PTE_PFN_SHIFT 8

enum access { ACC_FETCH, ACC_READ, ACC_WRITE };
static const char *const ACCESS_NAMES[] = {"fetch", "read", "write"};

enum trap_kind { T_PAGE_FAULT, T_PROTECTION_FAULT, T_TLB_MISS, T_ILLEGAL, T_SYSCALL, T_OTHER };
static const char *const TRAP_NAMES[] = {"page_fault", "protection_fault", "tlb_miss",
                                         "illegal_instruction", "syscall", "other"};

enum restart { R_PRECISE, R_STATE_REGISTER, R_DECODE };
static const char *const RESTART_NAMES[] = {"precise", "state_register", "decode"};

#define REGISTERS 8
#define STACK_POINTER 7
#define SYS_EXIT 0
#define SYS_PUTC 2
#define SYS_WRITE 3
#define SYS_FORK 4
#define SYS_EXEC 5
#define SYS_WAIT 6
#define SYS_READ 7
#define SYS_MMAP 8
#define SYS_MUNMAP 9
/* What a failed FORK, EXEC, WAIT, MMAP or MUNMAP returns in r0 (with no fork, never a child
 * to wait for; with no MMAP, never a mapped page to unmap). */
#define CALL_FAILED 0xFFFFFFFFu

/* The ISA, for the decode restart variant: word 0 is
 * | opcode (8) | amode (3) | areg (3) | bmode (3) | breg (3) | number (12) | */
enum opcode {
    OP_NOP = 1, OP_LOAD, OP_STORE, OP_MOV, OP_ADD, OP_SUB, OP_ADDI, OP_CMP,
    OP_BEQ, OP_BNE, OP_BLT, OP_BGE, OP_JMP, OP_SYS, OP_PUSHM
};
enum mode { M_NONE, M_REG, M_IND, M_INC, M_DEC, M_IMM, M_ABS };
#define MODE_BIT(m) (1u << (m))

/* ------------------------------------------------------------------------- */
/* Small utilities: growable buffers, failure                                */
/* ------------------------------------------------------------------------- */

static int verbose = 0;

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        /* Nothing sensible is left to do; pagingcheck reports the exit with
         * this line from stderr. */
        fprintf(stderr, "kernel.c: out of memory (%zu bytes)\n", n);
        exit(70);
    }
    return q;
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "kernel.c: out of memory (%zu x %zu bytes)\n", count, size);
        exit(70);
    }
    return p;
}

typedef struct {
    char *data;
    size_t len, cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
    if (b->len + more + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + more + 1)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
}

static void sb_add(sbuf *b, const void *bytes, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list args;
    int n;
    va_start(args, fmt);
    n = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    if (n < 0)
        return;
    sb_reserve(b, (size_t)n);
    va_start(args, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, args);
    va_end(args);
    b->len += (size_t)n;
}

/* A JSON string literal for s (quotes included). */
static void sb_json_string(sbuf *b, const char *s, size_t n)
{
    size_t i;
    sb_add(b, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_add(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_add(b, &s[i], 1);
        }
    }
    sb_add(b, "\"", 1);
}

/* Everything this program writes on stdout goes through `out` and is pushed
 * with `send`: before waiting for an answer, and after every reply. Port
 * operations that wait for nothing stay buffered until then. */
static sbuf out;

static void send(void)
{
    if (out.len) {
        fwrite(out.data, 1, out.len, stdout);
        out.len = 0;
    }
    fflush(stdout);
}

static jmp_buf request_failed;

/* End the current request with {"failed": kind, ...}: pagingcheck reports it
 * as this kernel's violation `kind`, naming this file and line. */
static void fail_at(const char *kind, int line, const char *fmt, ...)
{
    char message[600];
    char where[32];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    snprintf(where, sizeof where, "kernel.c:%d", line);
    fprintf(stderr, "%s: %s: %s\n", where, kind, message);
    sb_printf(&out, "{\"failed\":\"%s\",\"message\":", kind);
    sb_json_string(&out, message, strlen(message));
    sb_printf(&out, ",\"where\":\"%s\"}\n", where);
    send();
    longjmp(request_failed, 1);
}

#define FAIL(kind, ...) fail_at(kind, __LINE__, __VA_ARGS__)
/* A rule of this kernel's own bookkeeping; broken, it is the kernel's crash. */
#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond))                                                               \
            fail_at("kernel_crash", __LINE__, "internal check failed: %s", #cond); \
    } while (0)

/* ------------------------------------------------------------------------- */
/* JSON reading: a small DOM over one line, for exactly the protocol's       */
/* messages (objects, arrays, integers, strings, true/false/null).           */
/* ------------------------------------------------------------------------- */

enum jtype { J_NULL, J_BOOL, J_INT, J_STR, J_ARR, J_OBJ };

typedef struct jv jv;
struct jv {
    enum jtype type;
    int boolean;
    long long num;
    char *str; /* J_STR: decoded in place, NUL-terminated */
    size_t len;
    char *key; /* the member name, inside an object */
    jv *first, *last, *next;
    size_t count;
};

#define POOL_BLOCK 4096

typedef struct {
    char *line;
    size_t len, cap;
    jv **blocks;
    size_t nblocks, block, used; /* the block being filled and how full it is */
    char *p;                     /* the parse cursor */
    const char *error;
} reader;

static jv *node(reader *r)
{
    jv *n;
    if (r->nblocks == 0 || r->used == POOL_BLOCK) {
        if (r->nblocks)
            r->block++;
        if (r->block == r->nblocks) {
            r->blocks = xrealloc(r->blocks, (r->nblocks + 1) * sizeof *r->blocks);
            r->blocks[r->nblocks++] = xcalloc(POOL_BLOCK, sizeof(jv));
        }
        r->used = 0;
    }
    n = &r->blocks[r->block][r->used++];
    memset(n, 0, sizeof *n);
    return n;
}

/* Read one line (without its newline); 0 at the end of input. */
static int read_line(reader *r)
{
    r->len = 0;
    for (;;) {
        size_t got;
        if (r->cap - r->len < 4096) {
            r->cap = r->cap ? r->cap * 2 : 65536;
            r->line = xrealloc(r->line, r->cap);
        }
        if (!fgets(r->line + r->len, (int)(r->cap - r->len), stdin))
            return r->len > 0;
        got = strlen(r->line + r->len);
        r->len += got;
        if (r->len && r->line[r->len - 1] == '\n') {
            r->line[--r->len] = '\0';
            return 1;
        }
    }
}

static void skip_space(reader *r)
{
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n')
        r->p++;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode the string at the cursor (just past its quote) in place. */
static char *parse_string(reader *r, size_t *length)
{
    char *start = r->p, *w = r->p;
    for (;;) {
        char c = *r->p++;
        if (c == '\0') {
            r->error = "unterminated string";
            return NULL;
        }
        if (c == '"')
            break;
        if (c != '\\') {
            *w++ = c;
            continue;
        }
        c = *r->p++;
        switch (c) {
        case '"': case '\\': case '/': *w++ = c; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned code = 0;
            int i;
            for (i = 0; i < 4; i++) {
                int d = hex_digit(r->p[i]);
                if (d < 0) {
                    r->error = "bad \\u escape";
                    return NULL;
                }
                code = code << 4 | (unsigned)d;
            }
            r->p += 4;
            /* UTF-8; a surrogate half is kept as its own three bytes: the
             * protocol's strings are names and hex, never such text. */
            if (code < 0x80) {
                *w++ = (char)code;
            } else if (code < 0x800) {
                *w++ = (char)(0xC0 | code >> 6);
                *w++ = (char)(0x80 | (code & 0x3F));
            } else {
                *w++ = (char)(0xE0 | code >> 12);
                *w++ = (char)(0x80 | (code >> 6 & 0x3F));
                *w++ = (char)(0x80 | (code & 0x3F));
            }
            break;
        }
        default:
            r->error = "bad escape";
            return NULL;
        }
    }
    *w = '\0';
    *length = (size_t)(w - start);
    return start;
}

static jv *parse_value(reader *r, int depth)
{
    jv *v;
    if (depth > 64) {
        r->error = "nested too deep";
        return NULL;
    }
    skip_space(r);
    v = node(r);
    switch (*r->p) {
    case '{':
    case '[': {
        int object = *r->p == '{';
        char close = object ? '}' : ']';
        v->type = object ? J_OBJ : J_ARR;
        r->p++;
        skip_space(r);
        if (*r->p == close) {
            r->p++;
            return v;
        }
        for (;;) {
            char *key = NULL;
            jv *item;
            if (object) {
                size_t klen;
                skip_space(r);
                if (*r->p != '"') {
                    r->error = "expected a member name";
                    return NULL;
                }
                r->p++;
                if (!(key = parse_string(r, &klen)))
                    return NULL;
                skip_space(r);
                if (*r->p++ != ':') {
                    r->error = "expected ':'";
                    return NULL;
                }
            }
            if (!(item = parse_value(r, depth + 1)))
                return NULL;
            item->key = key;
            if (v->last)
                v->last->next = item;
            else
                v->first = item;
            v->last = item;
            v->count++;
            skip_space(r);
            if (*r->p == ',') {
                r->p++;
                continue;
            }
            if (*r->p == close) {
                r->p++;
                return v;
            }
            r->error = "expected ',' or the end of a collection";
            return NULL;
        }
    }
    case '"':
        r->p++;
        v->type = J_STR;
        return (v->str = parse_string(r, &v->len)) ? v : NULL;
    case 't':
    case 'f':
    case 'n': {
        static const char *const words[] = {"true", "false", "null"};
        int i;
        for (i = 0; i < 3; i++) {
            size_t n = strlen(words[i]);
            if (strncmp(r->p, words[i], n) == 0) {
                r->p += n;
                v->type = i == 2 ? J_NULL : J_BOOL;
                v->boolean = i == 0;
                return v;
            }
        }
        r->error = "unknown literal";
        return NULL;
    }
    default: {
        /* Integers only: every number of the protocol is one. */
        int negative = 0, digits = 0;
        unsigned long long n = 0;
        if (*r->p == '-') {
            negative = 1;
            r->p++;
        }
        while (*r->p >= '0' && *r->p <= '9') {
            if (++digits > 18) {
                r->error = "integer too large";
                return NULL;
            }
            n = n * 10 + (unsigned)(*r->p++ - '0');
        }
        if (!digits || *r->p == '.' || *r->p == 'e' || *r->p == 'E') {
            r->error = digits ? "not an integer" : "unexpected character";
            return NULL;
        }
        v->type = J_INT;
        v->num = negative ? -(long long)n : (long long)n;
        return v;
    }
    }
}

/* Parse the line just read; NULL (with r->error) if it is not one JSON value. */
static jv *parse_line(reader *r)
{
    jv *v;
    r->block = 0;
    r->used = 0;
    r->p = r->line;
    r->error = NULL;
    v = parse_value(r, 0);
    if (v) {
        skip_space(r);
        if (*r->p) {
            r->error = "text after the value";
            v = NULL;
        }
    }
    return v;
}

static jv *jget(const jv *object, const char *key)
{
    jv *m;
    if (!object || object->type != J_OBJ)
        return NULL;
    for (m = object->first; m; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

/* Accessors that fail the request (interface_error) on a message that does
 * not have the shape the protocol gives it. */
static long long need_int(const jv *v, const char *what, long long low, long long high)
{
    if (!v || v->type != J_INT || v->num < low || v->num > high)
        FAIL("interface_error", "%s: expected an integer in %lld..%lld", what, low, high);
    return v->num;
}

static const char *need_str(const jv *v, const char *what)
{
    if (!v || v->type != J_STR)
        FAIL("interface_error", "%s: expected a string", what);
    return v->str;
}

static const jv *need(const jv *v, enum jtype type, const char *what)
{
    if (!v || v->type != type)
        FAIL("interface_error", "%s: missing, or of the wrong type", what);
    return v;
}

#define WORD_MAX 0xFFFFFFFFLL

/* ------------------------------------------------------------------------- */
/* Configuration (from hello)                                                */
/* ------------------------------------------------------------------------- */

static struct {
    int ready;
    uint32_t page_words, va_pages, kernel_frames, user_frames, swap_slots, image_blocks;
    uint32_t memory_words, kernel_words, first_user_pfn;
    int tagged;
    enum restart restart;
    uint32_t levels, level_bits[32], level_shift[32];
    const char *table_kind;
} cfg;

/* ------------------------------------------------------------------------- */
/* Kernel state                                                              */
/* ------------------------------------------------------------------------- */

enum pstate { P_READY = 1, P_RUNNING, P_BLOCKED, P_EXITED };
static const char *const STATE_NAMES[] = {"?", "ready", "running", "blocked", "exited"};

/* Where a page's contents are when no frame holds them. */
enum where { W_ZERO, W_IMAGE, W_SLOT };

enum kind { K_TEXT, K_DATA, K_HEAP, K_STACK };
static const char *const KIND_NAMES[] = {"text", "data", "heap", "stack"};

enum op { OP_NONE, OP_READ_IO, OP_WRITE_IO };

typedef struct {
    uint32_t regs[REGISTERS], pc, flags;
} context;

typedef struct {
    uint8_t dirty;   /* a mapping that went away had M set: the frame is newer than `source` */
    uint8_t where;   /* enum where */
    uint32_t source; /* image block or swap slot (W_IMAGE, W_SLOT); 0 for W_ZERO */
    int32_t slot;    /* the swap slot reserved for this page, -1 for read-only pages */
} page;

#define MAX_PINNED 8 /* an instruction touches at most 4 pages; room to spare */

typedef struct {
    uint8_t state; /* enum pstate */
    uint32_t root; /* page-table root (a word address in the kernel region) */
    uint8_t has_context;
    context saved;     /* registers while off the CPU (the instruction's start if blocked) */
    int32_t fault_vpn; /* the page a blocked process waits for, else -1 */
    uint32_t ticket;   /* its unfinished instruction's ticket, 0 if none */
    uint8_t ran;       /* dispatched, and no trap since */
    uint8_t npinned;
    uint32_t pinned[MAX_PINNED]; /* vpns its unfinished instruction faulted in */
    char *name;                  /* the program's name (text pages report "text:NAME") */
    uint32_t text_pages, data_pages, heap_pages, stack_pages;
    page *pages; /* va_pages entries; NULL once exited */
} process;

typedef struct {
    uint32_t hpid, hvpn; /* the page whose contents are here (hpid 0: none) */
    uint32_t ipid, ivpn; /* the page reserved to come in next (ipid 0: none) */
    uint8_t mapped;      /* hpid's PTE for hvpn is present and points here */
    uint8_t op;          /* the transfer in flight: enum op */
    uint32_t id, block;  /* its request id and disk block */
} frame;

enum slot_state { S_FREE, S_OWNED, S_ORPHAN };

typedef struct {
    uint8_t state;      /* enum slot_state; S_ORPHAN: its page is gone, a transfer is not */
    uint32_t pid, vpn;  /* the page it is reserved for (S_OWNED) */
} slot;

static struct {
    uint32_t next_pid, current, exclusive;
    frame *frames;  /* user_frames, by pfn - first_user_pfn */
    uint32_t *fifo; /* pfns holding a page, oldest load first */
    uint32_t nfifo;
    slot *slots;     /* swap_slots */
    uint8_t *kused;  /* kernel_words: which kernel-region words hold tables */
    process *procs;  /* by pid - 1; pids are never reused, and the asid is the pid */
    uint32_t nprocs;
} k;

static uint32_t *memory;  /* this process's copy of physical memory */
static uint32_t *scratch_memory; /* spawn's trial copy of the kernel region */
static uint8_t *scratch_used;
static context entry_context; /* the CPU's registers when the current call started */
static sbuf events;
static int nevents;

static process *proc_of(uint32_t pid)
{
    return pid >= 1 && pid <= k.nprocs ? &k.procs[pid - 1] : NULL;
}

static frame *frame_at(uint32_t pfn)
{
    CHECK(pfn >= cfg.first_user_pfn && pfn - cfg.first_user_pfn < cfg.user_frames);
    return &k.frames[pfn - cfg.first_user_pfn];
}

/* The page a layout position is: its kind, protection and index in its
 * segment; 0 for a vpn no segment covers. The layout is Program.layout()
 * (docs/hardware.md): text from vpn 0, data, heap, stack at the top. */
static int layout(const process *p, uint32_t vpn, int *kind, uint32_t *prot, uint32_t *index)
{
    uint32_t low = p->text_pages + p->data_pages + p->heap_pages;
    uint32_t rw = PTE_READ | PTE_WRITE | PTE_USER;
    *index = 0;
    if (vpn < p->text_pages) {
        *kind = K_TEXT;
        *prot = PTE_READ | PTE_EXEC | PTE_USER;
        *index = vpn;
    } else if (vpn < p->text_pages + p->data_pages) {
        *kind = K_DATA;
        *prot = rw;
    } else if (vpn < low) {
        *kind = K_HEAP;
        *prot = rw;
    } else if (vpn >= cfg.va_pages - p->stack_pages && vpn < cfg.va_pages) {
        *kind = K_STACK;
        *prot = rw;
    } else {
        return 0;
    }
    return 1;
}

static int valid_page(const process *p, uint32_t vpn)
{
    int kind;
    uint32_t prot, index;
    return p->pages && vpn < cfg.va_pages && layout(p, vpn, &kind, &prot, &index);
}

static uint32_t prot_of(const process *p, uint32_t vpn)
{
    int kind;
    uint32_t prot = 0, index;
    layout(p, vpn, &kind, &prot, &index);
    return prot;
}

/* ------------------------------------------------------------------------- */
/* Events                                                                    */
/* ------------------------------------------------------------------------- */

static void event(const char *kind, int64_t pid, int64_t vpn, int64_t pfn, const char *fmt, ...)
{
    char detail[200] = "";
    if (fmt) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(detail, sizeof detail, fmt, args);
        va_end(args);
    }
    sb_printf(&events, "%s{\"kind\":\"%s\"", nevents++ ? "," : "", kind);
    if (pid >= 0)
        sb_printf(&events, ",\"pid\":%" PRId64, pid);
    if (vpn >= 0)
        sb_printf(&events, ",\"vpn\":%" PRId64, vpn);
    if (pfn >= 0)
        sb_printf(&events, ",\"pfn\":%" PRId64, pfn);
    sb_add(&events, ",\"detail\":", 10);
    sb_json_string(&events, detail, strlen(detail));
    sb_add(&events, "}", 1);
}

#define NONE (-1)

/* ------------------------------------------------------------------------- */
/* The hardware port                                                         */
/* ------------------------------------------------------------------------- */

static reader answers; /* port answers are parsed apart from the request they serve */

static const jv *await_value(const char *operation)
{
    const jv *message, *value;
    send();
    if (!read_line(&answers)) {
        fprintf(stderr, "kernel.c: input ended while %s waited for its answer\n", operation);
        exit(0);
    }
    message = parse_line(&answers);
    if (!message || message->type != J_OBJ)
        FAIL("interface_error", "%s: the answer is not a JSON object (%s)", operation,
             answers.error ? answers.error : "not an object");
    if ((value = jget(message, "port_error")) != NULL)
        FAIL("port_rules", "%s was refused: %s", operation,
             value->type == J_STR ? value->str : "?");
    if (!(value = jget(message, "value")))
        FAIL("interface_error", "%s: the answer has no value", operation);
    return value;
}

static void port_write(uint32_t pa, uint32_t word)
{
    CHECK(pa < cfg.memory_words);
    memory[pa] = word; /* our copy follows our own writes; pagingcheck sends the rest */
    sb_printf(&out, "{\"port\":\"write\",\"args\":[%" PRIu32 ",%" PRIu32 "]}\n", pa, word);
}

static void port_fill(uint32_t pfn, uint32_t word)
{
    uint32_t i, base = pfn * cfg.page_words;
    for (i = 0; i < cfg.page_words; i++)
        memory[base + i] = word;
    sb_printf(&out, "{\"port\":\"fill\",\"args\":[%" PRIu32 ",%" PRIu32 "]}\n", pfn, word);
}

static void port_load_context(uint32_t root, uint32_t asid)
{
    sb_printf(&out, "{\"port\":\"load_context\",\"args\":[%" PRIu32 ",%" PRIu32 "]}\n", root,
              asid);
}

static void port_tlb_invalidate(uint32_t asid, uint32_t vpn)
{
    sb_printf(&out, "{\"port\":\"tlb_invalidate\",\"args\":[%" PRIu32 ",%" PRIu32 "]}\n", asid,
              vpn);
}

static void port_tlb_flush(void)
{
    sb_printf(&out, "{\"port\":\"tlb_flush\",\"args\":[]}\n");
}

static void port_tlb_flush_asid(uint32_t asid)
{
    sb_printf(&out, "{\"port\":\"tlb_flush_asid\",\"args\":[%" PRIu32 "]}\n", asid);
}

static void port_resume(const context *c)
{
    int i;
    sb_printf(&out, "{\"port\":\"resume\",\"args\":[{\"regs\":[");
    for (i = 0; i < REGISTERS; i++)
        sb_printf(&out, "%s%" PRIu32, i ? "," : "", c->regs[i]);
    sb_printf(&out, "],\"pc\":%" PRIu32 ",\"flags\":%" PRIu32 "}]}\n", c->pc, c->flags);
}

static void port_set_timer(int on)
{
    sb_printf(&out, "{\"port\":\"set_timer\",\"args\":[%s]}\n", on ? "true" : "false");
}

static void port_console_write(uint32_t byte)
{
    sb_printf(&out, "{\"port\":\"console_write\",\"args\":[%" PRIu32 "]}\n", byte);
}

/* The next byte typed at the console, or -1 when none is left. */
static int64_t port_console_read(void)
{
    const jv *value;
    sb_printf(&out, "{\"port\":\"console_read\",\"args\":[]}\n");
    value = await_value("console_read");
    return value->type == J_NULL ? -1 : need_int(value, "console_read's byte", 0, 255);
}

static void port_register_space(uint32_t asid, uint32_t root)
{
    sb_printf(&out, "{\"port\":\"register_space\",\"args\":[%" PRIu32 ",%" PRIu32 "]}\n", asid,
              root);
}

static void port_release_space(uint32_t asid)
{
    sb_printf(&out, "{\"port\":\"release_space\",\"args\":[%" PRIu32 "]}\n", asid);
    await_value("release_space");
}

static uint32_t port_submit(int write, uint32_t block, uint32_t pfn)
{
    sb_printf(&out, "{\"port\":\"submit\",\"args\":[\"%s\",%" PRIu32 ",%" PRIu32 "]}\n",
              write ? "write" : "read", block, pfn);
    return (uint32_t)need_int(await_value("submit"), "submit's request id", 0, WORD_MAX);
}

typedef struct {
    int faulted;
    uint32_t pa;             /* when it did not fault */
    enum trap_kind kind;     /* when it did */
    uint32_t va;
    enum access access;
} probe_answer;

static enum trap_kind trap_kind_named(const char *name)
{
    int i;
    for (i = 0; i < T_OTHER; i++)
        if (strcmp(name, TRAP_NAMES[i]) == 0)
            return (enum trap_kind)i;
    return T_OTHER;
}

static enum access access_named(const char *name)
{
    int i;
    for (i = 0; i < 3; i++)
        if (strcmp(name, ACCESS_NAMES[i]) == 0)
            return (enum access)i;
    FAIL("interface_error", "unknown access %s", name);
    return ACC_FETCH;
}

/* PROBE: what a user access would do now, in the loaded address space. */
static probe_answer port_probe(uint32_t va, enum access access)
{
    probe_answer a;
    const jv *value, *fault;
    memset(&a, 0, sizeof a);
    sb_printf(&out, "{\"port\":\"probe\",\"args\":[%" PRIu32 ",\"%s\"]}\n", va,
              ACCESS_NAMES[access]);
    value = need(await_value("probe"), J_OBJ, "probe's answer");
    if ((fault = jget(value, "fault")) != NULL) {
        a.faulted = 1;
        a.kind = trap_kind_named(need_str(jget(fault, "kind"), "probe fault kind"));
        a.va = (uint32_t)need_int(jget(fault, "va"), "probe fault va", 0, WORD_MAX);
        a.access = access_named(need_str(jget(fault, "access"), "probe fault access"));
    } else {
        a.pa = (uint32_t)need_int(jget(value, "pa"), "probe pa", 0, cfg.memory_words - 1);
    }
    return a;
}

/* ------------------------------------------------------------------------- */
/* Page tables: a tree of `levels` levels (linear is one level)              */
/* ------------------------------------------------------------------------- */

static uint32_t table_size(uint32_t level)
{
    return 1u << cfg.level_bits[level];
}

static uint32_t table_index(uint32_t level, uint32_t vpn)
{
    return (vpn >> cfg.level_shift[level]) & (table_size(level) - 1);
}

/* First fit over the kernel region's words; word 0 is never handed out, so
 * that 0 can mean "no table". Returns 0 when nothing fits. */
static uint32_t kalloc(uint8_t *used, uint32_t *mem, uint32_t words)
{
    uint32_t start = 1, run = 0, w;
    for (w = 1; w < cfg.kernel_words; w++) {
        if (used[w]) {
            run = 0;
            start = w + 1;
            continue;
        }
        if (++run == words) {
            memset(used + start, 1, words);
            memset(mem + start, 0, words * sizeof *mem);
            return start;
        }
    }
    return 0;
}

/* The address of vpn's PTE under `root`, allocating the missing tables of
 * its path (in `used` and `mem`, which may be scratch copies); 0 when
 * kernel memory runs out. */
static uint32_t build_path(uint8_t *used, uint32_t *mem, uint32_t root, uint32_t vpn)
{
    uint32_t table = root, level;
    for (level = 0; level + 1 < cfg.levels; level++) {
        uint32_t at = table + table_index(level, vpn);
        if (!(mem[at] & PTE_PRESENT)) {
            uint32_t below = kalloc(used, mem, table_size(level + 1));
            if (!below)
                return 0;
            mem[at] = below << PTE_PFN_SHIFT | PTE_PRESENT;
        }
        table = mem[at] >> PTE_PFN_SHIFT;
    }
    return table + table_index(cfg.levels - 1, vpn);
}

/* The address of vpn's PTE, from memory; the path was built at spawn. */
static uint32_t pte_addr(const process *p, uint32_t vpn)
{
    uint32_t table = p->root, level;
    for (level = 0; level + 1 < cfg.levels; level++) {
        uint32_t upper = memory[table + table_index(level, vpn)];
        CHECK(upper & PTE_PRESENT);
        table = upper >> PTE_PFN_SHIFT;
        CHECK(table > 0 && table + table_size(level + 1) <= cfg.kernel_words);
    }
    return table + table_index(cfg.levels - 1, vpn);
}

static uint32_t make_pte(uint32_t pfn, uint32_t prot, int present)
{
    return pfn << PTE_PFN_SHIFT | (prot & PTE_PROT_MASK) | (present ? PTE_PRESENT : 0);
}

/* Free a table and everything below it: its words go back to zero (a walk
 * through a stale root then finds no entry) and to the allocator. */
static void free_table(uint32_t table, uint32_t level)
{
    uint32_t i, size = table_size(level);
    CHECK(table > 0 && table + size <= cfg.kernel_words);
    for (i = 0; i < size; i++) {
        uint32_t word = memory[table + i];
        if (level + 1 < cfg.levels && (word & PTE_PRESENT))
            free_table(word >> PTE_PFN_SHIFT, level + 1);
        if (word)
            port_write(table + i, 0);
        k.kused[table + i] = 0;
    }
}

/* ------------------------------------------------------------------------- */
/* Frames, slots and the FIFO                                                */
/* ------------------------------------------------------------------------- */

static int frame_free(const frame *f)
{
    return !f->hpid && !f->ipid && f->op == OP_NONE;
}

/* The frame holding (pid, vpn)'s contents (mapped or being written back), or -1. */
static int64_t frame_holding(uint32_t pid, uint32_t vpn)
{
    uint32_t i;
    for (i = 0; i < cfg.user_frames; i++)
        if (k.frames[i].hpid == pid && k.frames[i].hvpn == vpn)
            return cfg.first_user_pfn + i;
    return -1;
}

/* The frame reserved for (pid, vpn) to come in, or -1. */
static int64_t frame_awaiting(uint32_t pid, uint32_t vpn)
{
    uint32_t i;
    for (i = 0; i < cfg.user_frames; i++)
        if (k.frames[i].ipid == pid && k.frames[i].ivpn == vpn)
            return cfg.first_user_pfn + i;
    return -1;
}

static void fifo_remove(uint32_t pfn)
{
    uint32_t i;
    for (i = 0; i < k.nfifo; i++)
        if (k.fifo[i] == pfn) {
            memmove(&k.fifo[i], &k.fifo[i + 1], (k.nfifo - i - 1) * sizeof *k.fifo);
            k.nfifo--;
            return;
        }
}

static int slot_moving(uint32_t s)
{
    uint32_t i;
    for (i = 0; i < cfg.user_frames; i++)
        if (k.frames[i].op != OP_NONE && k.frames[i].block == s)
            return 1;
    return 0;
}

/* A slot whose page is gone is freed once no transfer uses it. */
static void free_orphan_slot(uint32_t block)
{
    if (block < cfg.swap_slots && k.slots[block].state == S_ORPHAN && !slot_moving(block)) {
        k.slots[block].state = S_FREE;
        event("free_slot", NONE, NONE, NONE, "slot %" PRIu32, block);
    }
}

/* ------------------------------------------------------------------------- */
/* Tickets: who may take a frame from a page                                 */
/* ------------------------------------------------------------------------- */

static uint32_t head(void)
{
    uint32_t pid, best = 0, ticket = 0;
    for (pid = 1; pid <= k.nprocs; pid++) {
        process *p = proc_of(pid);
        if (p->ticket && (!best || p->ticket < ticket)) {
            best = pid;
            ticket = p->ticket;
        }
    }
    return best;
}

static void take_ticket(process *p)
{
    uint32_t pid, top = 0;
    if (p->ticket)
        return;
    for (pid = 1; pid <= k.nprocs; pid++)
        if (proc_of(pid)->ticket > top)
            top = proc_of(pid)->ticket;
    p->ticket = top + 1;
}

/* Renumber the tickets 1..n in their order: only the order means anything,
 * and equal states must save as equal strings. */
static void renumber_tickets(void)
{
    uint32_t pid, rank = 0, last = 0;
    for (;;) {
        uint32_t next = 0, who = 0;
        for (pid = 1; pid <= k.nprocs; pid++) {
            uint32_t t = proc_of(pid)->ticket;
            if (t > last && (!next || t < next)) {
                next = t;
                who = pid;
            }
        }
        if (!who)
            return;
        last = next;
        proc_of(who)->ticket = ++rank;
    }
}

static int pinned(const process *p, uint32_t vpn)
{
    uint32_t i;
    for (i = 0; i < p->npinned; i++)
        if (p->pinned[i] == vpn)
            return 1;
    return 0;
}

static void pin(process *p, uint32_t vpn)
{
    if (pinned(p, vpn))
        return;
    CHECK(p->npinned < MAX_PINNED);
    p->pinned[p->npinned++] = vpn;
}

/* p's instruction retired: its ticket and pins go. */
static void retired(process *p)
{
    p->ticket = 0;
    p->npinned = 0;
    p->ran = 0;
}

/* At a kernel entry that is not a trap of the running process: its last
 * instruction ran without trapping, so it retired. */
static void note_retired(void)
{
    process *p = proc_of(k.current);
    if (p && p->state == P_RUNNING && p->ran)
        retired(p);
}

/* ------------------------------------------------------------------------- */
/* Paging                                                                    */
/* ------------------------------------------------------------------------- */

/* The incoming page's contents are in the frame now (not yet mapped). */
static void install(uint32_t pfn)
{
    frame *f = frame_at(pfn);
    f->hpid = f->ipid;
    f->hvpn = f->ivpn;
    f->ipid = f->ivpn = 0;
    k.fifo[k.nfifo++] = pfn;
    event("pagein", f->hpid, f->hvpn, pfn, NULL);
}

/* Bring the frame's incoming page in: zero-fill now, or read its block. */
static void page_in(uint32_t pfn)
{
    frame *f = frame_at(pfn);
    process *p = proc_of(f->ipid);
    page *pg;
    CHECK(p && p->pages && f->op == OP_NONE);
    pg = &p->pages[f->ivpn];
    if (pg->where == W_ZERO) {
        port_fill(pfn, 0);
        install(pfn);
    } else {
        f->op = OP_READ_IO;
        f->block = pg->source;
        f->id = port_submit(0, pg->source, pfn);
    }
}

static void map_page(process *p, uint32_t pid, uint32_t vpn, uint32_t pfn)
{
    frame *f = frame_at(pfn);
    CHECK(f->hpid == pid && f->hvpn == vpn && !f->mapped && f->op == OP_NONE);
    /* No TLB invalidation: the entry was not present, and the hardware
     * walker never caches an entry that is not present. */
    port_write(pte_addr(p, vpn), make_pte(pfn, prot_of(p, vpn), 1));
    f->mapped = 1;
    event("map", pid, vpn, pfn, NULL);
}

/* Unmap the frame's page; write it back if it is dirty, else drop the copy. */
static void evict(uint32_t pfn)
{
    frame *f = frame_at(pfn);
    process *p = proc_of(f->hpid);
    page *pg;
    CHECK(p && p->pages && f->op == OP_NONE);
    pg = &p->pages[f->hvpn];
    if (f->mapped) {
        uint32_t at = pte_addr(p, f->hvpn), old = memory[at];
        port_write(at, make_pte(0, prot_of(p, f->hvpn), 0));
#ifndef BUG_STALE_TLB
        /* The TLB may still cache the old PTE: without this, the process
         * keeps reaching the frame after it is given to another page. */
        port_tlb_invalidate(f->hpid, f->hvpn);
#else
        (void)port_tlb_invalidate; /* the twin's bug: the stale entry stays */
#endif
        if (old & PTE_MODIFIED)
            pg->dirty = 1;
        f->mapped = 0;
    }
    fifo_remove(pfn);
    if (pg->dirty) {
        CHECK(pg->slot >= 0); /* only writable pages get dirty, and they have slots */
        f->op = OP_WRITE_IO;
        f->block = (uint32_t)pg->slot;
        f->id = port_submit(1, (uint32_t)pg->slot, pfn);
        event("evict_dirty", f->hpid, f->hvpn, pfn, NULL);
        event("writeback", f->hpid, f->hvpn, pfn, "eviction");
    } else {
        event("evict_clean", f->hpid, f->hvpn, pfn, NULL);
        f->hpid = f->hvpn = 0;
    }
}

/* A frame for pid's page: a free one, or (the head only) the oldest-loaded
 * frame whose page is not pinned to the head. -1 when pid must wait. A dirty
 * victim's frame comes back busy with its write-back. */
static int64_t take_frame(process *p, uint32_t pid)
{
    uint32_t i;
    for (i = 0; i < cfg.user_frames; i++)
        if (frame_free(&k.frames[i]))
            return cfg.first_user_pfn + i;
    if (head() != pid)
        return -1;
    for (i = 0; i < k.nfifo; i++) {
        uint32_t pfn = k.fifo[i];
        frame *f = frame_at(pfn);
        if (f->op == OP_NONE && !f->ipid && f->hpid && !(f->hpid == pid && pinned(p, f->hvpn))) {
            evict(pfn);
            return pfn;
        }
    }
    return -1;
}

/* Try to map the page p waits for: 1 when mapped now, 0 to wait. */
static int serve(process *p, uint32_t pid)
{
    uint32_t vpn = (uint32_t)p->fault_vpn;
    int64_t pfn = frame_holding(pid, vpn);
    if (pfn < 0 && frame_awaiting(pid, vpn) < 0) {
        frame *f;
        if ((pfn = take_frame(p, pid)) < 0)
            return 0;
        f = frame_at((uint32_t)pfn);
        f->ipid = pid;
        f->ivpn = vpn;
        if (f->op == OP_NONE) /* else: after the victim's write-back */
            page_in((uint32_t)pfn);
        pfn = frame_holding(pid, vpn);
    }
    if (pfn < 0 || frame_at((uint32_t)pfn)->op != OP_NONE)
        return 0;
    if (!frame_at((uint32_t)pfn)->mapped)
        map_page(p, pid, vpn, (uint32_t)pfn);
    return 1;
}

/* Serve the blocked processes, oldest ticket first; ready those now mapped.
 * Each is visited once, in (ticket, pid) order. */
static void retry(void)
{
    uint32_t last_ticket = 0, last_pid = 0;
    for (;;) {
        uint32_t pid, best = 0;
        process *p;
        for (pid = 1; pid <= k.nprocs; pid++) {
            uint32_t t = proc_of(pid)->ticket;
            if (proc_of(pid)->state != P_BLOCKED)
                continue;
            if (t < last_ticket || (t == last_ticket && pid <= last_pid))
                continue; /* visited */
            if (!best || t < proc_of(best)->ticket)
                best = pid;
        }
        if (!best)
            return;
        p = proc_of(best);
        last_ticket = p->ticket;
        last_pid = best;
        if (serve(p, best)) {
            p->state = P_READY;
            p->fault_vpn = -1;
            event("ready", best, NONE, NONE, NULL);
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Processes                                                                 */
/* ------------------------------------------------------------------------- */

/* End p: free its frames and slots (those with a transfer in flight stay
 * busy until it completes), its page table and its address space. */
static void terminate(process *p, uint32_t pid, const char *why)
{
    uint32_t vpn;
    for (vpn = 0; vpn < cfg.va_pages; vpn++) {
        int64_t pfn;
        page *pg;
        if (!valid_page(p, vpn))
            continue;
        pg = &p->pages[vpn];
        if ((pfn = frame_holding(pid, vpn)) >= 0) {
            frame *f = frame_at((uint32_t)pfn);
            f->mapped = 0;
            f->hpid = f->hvpn = 0;
            fifo_remove((uint32_t)pfn);
            if (f->op == OP_NONE)
                event("free_frame", NONE, NONE, pfn, NULL);
        }
        if ((pfn = frame_awaiting(pid, vpn)) >= 0) {
            frame *f = frame_at((uint32_t)pfn);
            CHECK(f->op != OP_NONE); /* a reservation always waits for a transfer */
            f->ipid = f->ivpn = 0;
        }
        if (pg->slot >= 0) {
            slot *s = &k.slots[pg->slot];
            s->state = S_ORPHAN;
            s->pid = s->vpn = 0;
            free_orphan_slot((uint32_t)pg->slot);
        }
    }
    free_table(p->root, 0);
    port_release_space(pid);
    /* Every TLB entry loaded for this asid goes, before the asid is gone. */
    port_tlb_flush_asid(pid);
    free(p->pages);
    free(p->name);
    memset(p, 0, sizeof *p);
    p->state = P_EXITED;
    p->fault_vpn = -1;
    if (k.current == pid)
        k.current = 0;
    if (k.exclusive == pid)
        k.exclusive = 0;
    event("exit", pid, NONE, NONE, "%s", why);
}

static void signal_and_terminate(process *p, uint32_t pid, const char *why)
{
    event("signal", pid, NONE, NONE, "%s", why);
    terminate(p, pid, why);
}

/* ------------------------------------------------------------------------- */
/* Instruction decoding, for the decode restart variant                      */
/* ------------------------------------------------------------------------- */

typedef struct {
    int mode, reg;
    uint32_t value;
} operand;

typedef struct {
    int op;
    operand a, b;
    int number; /* SYS's call number, PUSHM's register list */
    int length;
} instruction;

static uint32_t modes_allowed(int op, int first)
{
    const uint32_t none = MODE_BIT(M_NONE), reg = MODE_BIT(M_REG), abs = MODE_BIT(M_ABS);
    const uint32_t memory_modes = MODE_BIT(M_IND) | MODE_BIT(M_INC) | MODE_BIT(M_DEC) | abs;
    switch (op) {
    case OP_NOP:
    case OP_SYS:
        return none;
    case OP_LOAD:
    case OP_STORE:
        return first ? reg : abs;
    case OP_MOV:
        return first ? reg | memory_modes | MODE_BIT(M_IMM) : reg | memory_modes;
    case OP_ADD:
    case OP_SUB:
    case OP_CMP:
        return reg;
    case OP_PUSHM:
        return first ? reg : none;
    case OP_ADDI:
        return first ? reg : MODE_BIT(M_IMM);
    case OP_BEQ:
    case OP_BNE:
    case OP_BLT:
    case OP_BGE:
    case OP_JMP:
        return first ? abs : none;
    default:
        return 0;
    }
}

static int has_extension(int mode)
{
    return mode == M_IMM || mode == M_ABS;
}

static int steps(int mode)
{
    return mode == M_INC || mode == M_DEC;
}

/* Decode word 0 (isa.illegal_reason's rules); 0 if it is not an instruction. */
static int decode_head(uint32_t word0, instruction *in)
{
    int op = (int)(word0 >> 24), number = (int)(word0 & 0xFFF);
    operand *both[2];
    int i;
    memset(in, 0, sizeof *in);
    in->op = op;
    in->a.mode = (int)(word0 >> 21 & 7);
    in->a.reg = (int)(word0 >> 18 & 7);
    in->b.mode = (int)(word0 >> 15 & 7);
    in->b.reg = (int)(word0 >> 12 & 7);
    in->number = number;
    if (op < OP_NOP || op > OP_PUSHM || in->a.mode > M_ABS || in->b.mode > M_ABS)
        return 0;
    if (op != OP_SYS && op != OP_PUSHM && number != 0)
        return 0;
    /* PUSHM lists one register or more of r0..r7, never its own stack register */
    if (op == OP_PUSHM && (number == 0 || number > 0xFF || (number >> in->a.reg & 1)))
        return 0;
    both[0] = &in->a;
    both[1] = &in->b;
    for (i = 0; i < 2; i++) {
        if (!(modes_allowed(op, i == 0) & MODE_BIT(both[i]->mode)))
            return 0;
        if ((both[i]->mode == M_NONE || has_extension(both[i]->mode)) && both[i]->reg != 0)
            return 0;
    }
    for (i = 0; i < 2; i++) {
        const operand *changed = both[i], *other = both[1 - i];
        int through = other->mode == M_IND || other->mode == M_INC || other->mode == M_DEC;
        if (steps(changed->mode) && through && changed->reg == other->reg)
            return 0;
    }
    in->length = 1 + has_extension(in->a.mode) + has_extension(in->b.mode);
    return 1;
}

static const operand *source_of(const instruction *in)
{
    if (in->op == OP_LOAD)
        return &in->b;
    return in->op == OP_STORE || in->op == OP_MOV ? &in->a : NULL;
}

static const operand *destination_of(const instruction *in)
{
    if (in->op == OP_LOAD)
        return &in->a;
    return in->op == OP_STORE || in->op == OP_MOV ? &in->b : NULL;
}

enum point { FETCH0, FETCH1, FETCH2, SRC, DST, PUSH };

typedef struct {
    int reg, delta;
} effect;

typedef struct {
    enum point point;
    uint32_t va;
    enum access access;
} memory_access;

static int is_memory(int mode)
{
    return mode == M_IND || mode == M_INC || mode == M_DEC || mode == M_ABS;
}

/* The address an operand names, applying its register change to regs. */
static uint32_t operand_address(const operand *o, uint32_t *regs)
{
    if (o->mode == M_ABS)
        return o->value;
    if (o->mode == M_DEC)
        return --regs[o->reg];
    if (o->mode == M_INC)
        return regs[o->reg]++;
    return regs[o->reg];
}

/* Every memory access of `in` run from `start`, in the CPU's order. */
static int accesses(const instruction *in, const context *start, memory_access *list)
{
    uint32_t regs[REGISTERS];
    const operand *src = source_of(in), *dst = destination_of(in);
    int n = 0, i;
    memcpy(regs, start->regs, sizeof regs);
    for (i = 0; i < in->length; i++) {
        list[n].point = (enum point)(FETCH0 + i);
        list[n].va = start->pc + (uint32_t)i;
        list[n++].access = ACC_FETCH;
    }
    if (src && is_memory(src->mode)) {
        list[n].point = SRC;
        list[n].va = operand_address(src, regs);
        list[n++].access = ACC_READ;
    }
    if (dst && is_memory(dst->mode)) {
        list[n].point = DST;
        list[n].va = operand_address(dst, regs);
        list[n++].access = ACC_WRITE;
    }
    if (in->op == OP_PUSHM) { /* highest register first, into the words below the stack */
        uint32_t va = regs[in->a.reg];
        for (i = REGISTERS - 1; i >= 0; i--)
            if (in->number >> i & 1) {
                list[n].point = PUSH;
                list[n].va = --va;
                list[n++].access = ACC_WRITE;
            }
    }
    return n;
}

/* The register changes `in` has made when it faults at `point`. */
static int side_effects(const instruction *in, enum point point, effect *list)
{
    const operand *evaluated[2];
    int n = 0, i, count = 0;
    if (point < SRC || point == PUSH) /* a PUSHM moves its register only at the end */
        return 0;
    evaluated[count++] = source_of(in);
    if (point == DST)
        evaluated[count++] = destination_of(in);
    for (i = 0; i < count; i++)
        if (evaluated[i] && steps(evaluated[i]->mode)) {
            list[n].reg = evaluated[i]->reg;
            list[n++].delta = evaluated[i]->mode == M_INC ? 1 : -1;
        }
    return n;
}

static void undo(context *c, const effect *list, int n)
{
    while (n-- > 0)
        c->regs[list[n].reg] -= (uint32_t)list[n].delta;
}

typedef struct {
    uint32_t va;
    enum access access;
    effect effects[8];
    int neffects;
    const char *point;
} located;

static const char *const POINT_NAMES[] = {"fetch0", "fetch1", "fetch2", "src", "dst", "push"};

/* The decode variant: the trap gives only the instruction's address, so read
 * the instruction and find which access faulted, by PROBE. For each fault
 * point, undo that point's side effects from the registers the fault left,
 * and keep the point whose access is the first that faults (a PUSHM's writes
 * are all one point). (The ISA forbids the MOVs that would make two fit.) */
static int locate(uint32_t pc, const context *after, located *found)
{
    uint32_t words[3];
    instruction in;
    int n = 0, i, matches = 0, point;
    for (i = 0; i < 3; i++) {
        probe_answer a;
        if (n && !decode_head(words[0], &in))
            break; /* word 0 is not an instruction: it would have trapped as illegal */
        if (n && i >= in.length)
            break;
        a = port_probe(pc + (uint32_t)i, ACC_FETCH);
        if (a.faulted) {
            found->va = a.va;
            found->access = a.access;
            found->neffects = 0;
            found->point = POINT_NAMES[i];
            return 1;
        }
        words[n++] = memory[a.pa];
    }
    if (!decode_head(words[0], &in) || n < in.length)
        return 0;
    {
        int next = 1;
        if (has_extension(in.a.mode))
            in.a.value = words[next++];
        if (has_extension(in.b.mode))
            in.b.value = words[next++];
    }
    for (point = SRC; point <= PUSH; point++) {
        effect undone[8];
        memory_access list[3 + REGISTERS];
        context start = *after;
        int count = side_effects(&in, (enum point)point, undone), total, j;
        undo(&start, undone, count);
        start.pc = pc;
        total = accesses(&in, &start, list);
        for (j = 0; j < total; j++) {
            probe_answer a = port_probe(list[j].va, list[j].access);
            if (!a.faulted)
                continue;
            if ((int)list[j].point == point) {
                matches++;
                found->va = a.va;
                found->access = a.access;
                memcpy(found->effects, undone, sizeof undone);
                found->neffects = count;
                found->point = POINT_NAMES[point];
            }
            break;
        }
    }
    if (matches > 1)
        FAIL("kernel_crash", "decode: the instruction at %" PRIu32 " fits two fault points", pc);
    return matches == 1;
}

/* ------------------------------------------------------------------------- */
/* The calls                                                                 */
/* ------------------------------------------------------------------------- */

static void finish_call(void)
{
    retry();
    renumber_tickets();
}

static void reply_events(void)
{
    sb_printf(&out, "{\"ok\":null,\"events\":[%s]}\n", events.len ? events.data : "");
}

static void call_boot(void)
{
    /* The machine comes up reset: memory is zero, so there is nothing to
     * scrub, and no table exists yet. The timer is armed so the checker can
     * interrupt; this kernel uses ticks only to learn that instructions
     * retired (scheduling is the driver's choice). */
    port_set_timer(1);
    event("boot", NONE, NONE, NONE, "%s", cfg.table_kind);
    finish_call();
    reply_events();
}

static void refuse(const char *why)
{
    sb_printf(&out, "{\"ok\":{\"refused\":");
    sb_json_string(&out, why, strlen(why));
    sb_printf(&out, "}}\n");
}

static void call_spawn(const jv *args)
{
    const jv *image = need(jget(args, "image"), J_OBJ, "spawn image");
    const jv *program = need(jget(image, "program"), J_OBJ, "spawn program");
    const jv *name = need(jget(program, "name"), J_STR, "program name");
    uint32_t pw = cfg.page_words;
    uint32_t text_words = (uint32_t)need(jget(program, "text"), J_ARR, "program text")->count;
    uint32_t data_words = (uint32_t)need(jget(program, "data"), J_ARR, "program data")->count;
    uint32_t first = (uint32_t)need_int(jget(image, "first"), "image first", 0, WORD_MAX);
    long long heap = need_int(jget(program, "heap_pages"), "heap_pages", 0, WORD_MAX);
    long long stack = need_int(jget(program, "stack_pages"), "stack_pages", 0, WORD_MAX);
    uint32_t entry = (uint32_t)need_int(jget(program, "entry"), "entry", 0, WORD_MAX);
    const jv *shared = need(jget(program, "shared"), J_ARR, "program shared");
    uint32_t text_pages = text_words ? (text_words + pw - 1) / pw : 1;
    uint32_t data_pages = (data_words + pw - 1) / pw;
    uint32_t writable, free_slots = 0, s, vpn, root, pid, w;
    process *p;
    (void)need_int(jget(image, "page_words"), "image page_words", pw, pw);

    if (shared->count > 0) {
        refuse("shared segments are not supported by this kernel");
        return;
    }
    if ((long long)text_pages + data_pages + heap + stack > cfg.va_pages) {
        refuse("the program does not fit the address space");
        return;
    }
    writable = data_pages + (uint32_t)heap + (uint32_t)stack;
    for (s = 0; s < cfg.swap_slots; s++)
        free_slots += k.slots[s].state == S_FREE;
    if (free_slots < writable) {
        refuse("not enough free swap slots");
        return;
    }

    /* Decide: build the table on scratch copies of the kernel region and of
     * the allocator, so a refusal changes nothing. */
    memcpy(scratch_used, k.kused, cfg.kernel_words);
    memcpy(scratch_memory, memory, cfg.kernel_words * sizeof *memory);
    {
        process probe_layout;
        memset(&probe_layout, 0, sizeof probe_layout);
        probe_layout.text_pages = text_pages;
        probe_layout.data_pages = data_pages;
        probe_layout.heap_pages = (uint32_t)heap;
        probe_layout.stack_pages = (uint32_t)stack;
        if (!(root = kalloc(scratch_used, scratch_memory, table_size(0)))) {
            refuse("kernel memory cannot hold the page table");
            return;
        }
        for (vpn = 0; vpn < cfg.va_pages; vpn++) {
            int kind;
            uint32_t prot, index, at;
            if (!layout(&probe_layout, vpn, &kind, &prot, &index))
                continue;
            if (!(at = build_path(scratch_used, scratch_memory, root, vpn))) {
                refuse("kernel memory cannot hold the page table");
                return;
            }
            /* A non-present PTE keeping the page's protection, for every
             * valid page: later edits overwrite it and never allocate. */
            scratch_memory[at] = make_pte(0, prot, 0);
        }
    }

    /* Perform: nothing below can be refused. */
    for (w = 1; w < cfg.kernel_words; w++)
        if (scratch_memory[w] != memory[w])
            port_write(w, scratch_memory[w]);
    memcpy(k.kused, scratch_used, cfg.kernel_words);

    pid = k.next_pid++;
    k.procs = xrealloc(k.procs, (size_t)pid * sizeof *k.procs);
    k.nprocs = pid;
    p = &k.procs[pid - 1];
    memset(p, 0, sizeof *p);
    p->state = P_READY;
    p->root = root;
    p->fault_vpn = -1;
    p->text_pages = text_pages;
    p->data_pages = data_pages;
    p->heap_pages = (uint32_t)heap;
    p->stack_pages = (uint32_t)stack;
    p->name = xcalloc(name->len + 1, 1);
    memcpy(p->name, name->str, name->len);
    p->pages = xcalloc(cfg.va_pages, sizeof *p->pages);
    s = 0;
    for (vpn = 0; vpn < cfg.va_pages; vpn++) {
        int kind;
        uint32_t prot, index;
        page *pg = &p->pages[vpn];
        pg->slot = -1;
        if (!layout(p, vpn, &kind, &prot, &index))
            continue;
        if (kind == K_TEXT) {
            pg->where = W_IMAGE;
            pg->source = first + index;
        } else if (kind == K_DATA) {
            pg->where = W_IMAGE;
            pg->source = first + text_pages + (vpn - text_pages);
        } else {
            pg->where = W_ZERO;
        }
        if (prot & PTE_WRITE) {
            while (k.slots[s].state != S_FREE)
                s++;
            k.slots[s].state = S_OWNED;
            k.slots[s].pid = pid;
            k.slots[s].vpn = vpn;
            pg->slot = (int32_t)s;
        }
    }
    /* A program starts at its entry, every register zero but r7, the stack
     * pointer, just past the stack. */
    p->has_context = 1;
    p->saved.pc = entry;
    p->saved.regs[STACK_POINTER] = cfg.va_pages * cfg.page_words;
    port_register_space(pid, root);
    events.len = 0; /* spawn's reply carries no events */
    nevents = 0;
    renumber_tickets();
    sb_printf(&out, "{\"ok\":{\"pid\":%" PRIu32 "}}\n", pid);
}

static void call_dispatch(const jv *args)
{
    uint32_t pid = (uint32_t)need_int(jget(args, "pid"), "dispatch pid", 1, WORD_MAX);
    process *p = proc_of(pid);
    if (!p || (p->state != P_READY && p->state != P_RUNNING))
        FAIL("kernel_crash", "dispatch(%" PRIu32 "): not a runnable process", pid);
    note_retired();
    retry(); /* a finished instruction may let a waiter go first */
    if (k.current != pid) {
        process *old = proc_of(k.current);
        if (old && old->state == P_RUNNING) {
            old->state = P_READY;
            old->saved = entry_context;
            old->has_context = 1;
        }
        port_load_context(p->root, pid);
        if (!cfg.tagged)
            port_tlb_flush(); /* untagged entries would match the new space's vpns */
        k.current = pid;
        event("dispatch", pid, NONE, NONE, "switch");
    }
    if (p->state != P_RUNNING) {
        CHECK(p->has_context);
        port_resume(&p->saved);
        p->state = P_RUNNING;
        p->has_context = 0;
        memset(&p->saved, 0, sizeof p->saved);
    }
    p->ran = 1;
    if (k.exclusive == pid)
        k.exclusive = 0;
    finish_call();
    reply_events();
}

typedef struct {
    enum trap_kind kind;
    uint32_t pc;
    int has_va;
    uint32_t va;
    enum access access;
    effect effects[8];
    int neffects;
    uint32_t number;
} trap;

static void page_fault(process *p, uint32_t pid, const trap *t)
{
    located where;
    context start = entry_context;
    uint32_t va, vpn, needed;
    if (t->has_va) {
        where.va = t->va;
        where.access = t->access;
        memcpy(where.effects, t->effects, sizeof t->effects);
        where.neffects = t->neffects;
        where.point = NULL;
    } else if (!locate(t->pc, &entry_context, &where)) {
        FAIL("kernel_crash", "decode: no fault point found for the instruction at %" PRIu32,
             t->pc);
    }
    /* Back the instruction up to its start: undo its side effects (none
     * under precise) and point the PC at it again. */
    undo(&start, where.effects, where.neffects);
    start.pc = t->pc;
    va = where.va;
    vpn = va / cfg.page_words;
    if (where.point)
        event("fault", pid, vpn, NONE, "%s %s %s va=%" PRIu32 " point=%s", TRAP_NAMES[t->kind],
              RESTART_NAMES[cfg.restart], ACCESS_NAMES[where.access], va, where.point);
    else
        event("fault", pid, vpn, NONE, "%s %s %s va=%" PRIu32, TRAP_NAMES[t->kind],
              RESTART_NAMES[cfg.restart], ACCESS_NAMES[where.access], va);
    if (va / cfg.page_words >= cfg.va_pages || !valid_page(p, vpn)) {
        signal_and_terminate(p, pid, "invalid");
        return;
    }
    /* A forbidden access to a page that is not resident is reported as a
     * page fault (there is no present entry to check), so check it here. */
    needed = PTE_USER | (where.access == ACC_FETCH  ? PTE_EXEC
                         : where.access == ACC_READ ? PTE_READ
                                                    : PTE_WRITE);
    if (t->kind == T_PROTECTION_FAULT || (prot_of(p, vpn) & needed) != needed) {
        signal_and_terminate(p, pid, "protection");
        return;
    }
    if (t->kind != T_PAGE_FAULT)
        FAIL("kernel_crash", "a %s trap on a hardware-refilled TLB", TRAP_NAMES[t->kind]);
    if (where.neffects || cfg.restart != R_PRECISE)
        event("backup", pid, vpn, NONE, "pc=%" PRIu32, t->pc);
    take_ticket(p);
    pin(p, vpn);
    p->fault_vpn = (int32_t)vpn;
    if (serve(p, pid)) {
        /* Handled without waiting: straight back to the instruction, and
         * only it runs next. */
        p->fault_vpn = -1;
        port_resume(&start);
        k.exclusive = pid;
    } else {
        p->state = P_BLOCKED;
        p->saved = start;
        p->has_context = 1;
        event(frame_awaiting(pid, vpn) >= 0 || frame_holding(pid, vpn) >= 0 ? "wait_transfer"
                                                                           : "wait_memory",
              pid, vpn, NONE, NULL);
    }
}

/* WRITE (the kernel reads the buffer) or READ (`into`: it writes the buffer with
 * console input): r2 words at r1, on one page the process may so access, else r0
 * is all ones. The kernel reaches the words by physical address, so a page that no
 * mapped frame holds is a fault in kernel mode: brought in as the process's own
 * access would bring it, and the call runs again from its SYS. READ marks the page
 * dirty, since no PTE's modified bit saw its writes. */
static void buffer_call(process *p, uint32_t pid, int into)
{
    uint32_t va = entry_context.regs[1], count = entry_context.regs[2];
    uint32_t vpn = va / cfg.page_words, base, done = 0;
    uint32_t needed = PTE_USER | (into ? PTE_WRITE : PTE_READ);
    int64_t pfn, byte;
    if (count < 1 || count > cfg.page_words ||
        ((uint64_t)va + count - 1) / cfg.page_words != vpn || vpn >= cfg.va_pages ||
        !valid_page(p, vpn) || (prot_of(p, vpn) & needed) != needed) {
        entry_context.regs[0] = CALL_FAILED;
        port_resume(&entry_context);
        return;
    }
    pfn = frame_holding(pid, vpn);
    if (pfn < 0 || !frame_at((uint32_t)pfn)->mapped || frame_at((uint32_t)pfn)->op != OP_NONE) {
        trap fault;
        memset(&fault, 0, sizeof fault);
        fault.kind = T_PAGE_FAULT;
        fault.pc = entry_context.pc - 1; /* the SYS: the call runs again from it */
        fault.has_va = 1;
        fault.va = va;
        fault.access = into ? ACC_WRITE : ACC_READ;
        event("kernel_fault", pid, vpn, NONE, "%s va=%" PRIu32, ACCESS_NAMES[fault.access], va);
        page_fault(p, pid, &fault);
        return;
    }
    base = (uint32_t)pfn * cfg.page_words + va % cfg.page_words;
    if (into) {
        while (done < count && (byte = port_console_read()) >= 0)
            port_write(base + done++, (uint32_t)byte);
        if (done)
            p->pages[vpn].dirty = 1;
    } else {
        for (done = 0; done < count; done++)
            port_console_write(memory[base + done] & 0xFF);
    }
    entry_context.regs[0] = done;
    port_resume(&entry_context);
}

static void call_on_trap(const jv *args)
{
    const jv *frame_json = need(jget(args, "trap"), J_OBJ, "trap");
    const jv *va = jget(frame_json, "va"), *access = jget(frame_json, "access");
    const jv *registers = jget(frame_json, "state_register"), *number = jget(frame_json, "number");
    uint32_t pid = k.current;
    process *p = proc_of(pid);
    trap t;
    memset(&t, 0, sizeof t);
    t.kind = trap_kind_named(need_str(jget(frame_json, "kind"), "trap kind"));
    t.pc = (uint32_t)need_int(jget(frame_json, "pc"), "trap pc", 0, WORD_MAX);
    if (va && va->type == J_INT && access && access->type == J_STR) {
        t.has_va = 1;
        t.va = (uint32_t)need_int(va, "trap va", 0, WORD_MAX);
        t.access = access_named(access->str);
    }
    if (registers && registers->type == J_ARR) {
        const jv *pair;
        for (pair = registers->first; pair && t.neffects < 8; pair = pair->next) {
            need(pair, J_ARR, "state_register entry");
            CHECK(pair->count == 2);
            t.effects[t.neffects].reg =
                (int)need_int(pair->first, "state_register reg", 0, REGISTERS - 1);
            t.effects[t.neffects++].delta =
                (int)need_int(pair->first->next, "state_register delta", -8, 8);
        }
    }
    if (number && number->type == J_INT)
        t.number = (uint32_t)need_int(number, "trap number", 0, WORD_MAX);
    if (!p || p->state != P_RUNNING)
        FAIL("kernel_crash", "a trap with no running process (current %" PRIu32 ")", pid);

    p->ran = 0;
    switch (t.kind) {
    case T_SYSCALL:
        retired(p); /* a system call retires its instruction */
        if (t.number == SYS_EXIT) {
            terminate(p, pid, "exit");
        } else if (t.number == SYS_WRITE || t.number == SYS_READ) {
            buffer_call(p, pid, t.number == SYS_READ);
        } else {
            if (t.number == SYS_PUTC)
                port_console_write(entry_context.regs[1] & 0xFF);
            if (t.number == SYS_FORK || t.number == SYS_EXEC || t.number == SYS_WAIT ||
                t.number == SYS_MMAP || t.number == SYS_MUNMAP)
                entry_context.regs[0] = CALL_FAILED; /* not implemented: the call fails */
            port_resume(&entry_context); /* no other call means anything: carry on */
        }
        break;
    case T_ILLEGAL:
        signal_and_terminate(p, pid, "illegal");
        break;
    case T_PAGE_FAULT:
    case T_PROTECTION_FAULT:
    case T_TLB_MISS:
        page_fault(p, pid, &t);
        break;
    default:
        FAIL("kernel_crash", "unexpected trap kind %s", TRAP_NAMES[t.kind]);
    }
    finish_call();
    reply_events();
}

static void call_on_disk(const jv *args)
{
    const jv *request = need(jget(args, "request"), J_OBJ, "request");
    uint32_t id = (uint32_t)need_int(jget(request, "id"), "request id", 0, WORD_MAX);
    const char *op = need_str(jget(request, "op"), "request op");
    uint32_t block = (uint32_t)need_int(jget(request, "block"), "request block", 0, WORD_MAX);
    uint32_t pfn = (uint32_t)need_int(jget(request, "pfn"), "request pfn", 0, WORD_MAX);
    frame *f = frame_at(pfn);
    int write = strcmp(op, "write") == 0;
    note_retired();
    CHECK(f->op == (write ? OP_WRITE_IO : OP_READ_IO) && f->id == id && f->block == block);
    f->op = OP_NONE;
    if (write) {
        if (f->hpid) { /* its page now lives in the slot (unless its process died) */
            page *pg = &proc_of(f->hpid)->pages[f->hvpn];
            pg->where = W_SLOT;
            pg->source = block;
            pg->dirty = 0;
            f->hpid = f->hvpn = 0;
        }
        if (f->ipid)
            page_in(pfn); /* the page that evicted it */
    } else if (f->ipid) {
        install(pfn);
    }
    if (frame_free(f))
        event("free_frame", NONE, NONE, pfn, NULL);
    free_orphan_slot(block);
    finish_call();
    reply_events();
}

static void call_on_timer(void)
{
    note_retired();
    event("tick", NONE, NONE, NONE, NULL);
    finish_call();
    reply_events();
}

static void call_kill(const jv *args)
{
    uint32_t pid = (uint32_t)need_int(jget(args, "pid"), "kill pid", 0, WORD_MAX);
    process *p = proc_of(pid);
    note_retired();
    if (p && p->state != P_EXITED)
        terminate(p, pid, "kill");
    finish_call();
    reply_events();
}

/* ------------------------------------------------------------------------- */
/* runnable and view                                                         */
/* ------------------------------------------------------------------------- */

static void reply_runnable(void)
{
    uint32_t pid;
    int n = 0;
    sb_printf(&out, "{\"ok\":[");
    if (k.exclusive) {
        sb_printf(&out, "%" PRIu32, k.exclusive);
    } else {
        for (pid = 1; pid <= k.nprocs; pid++) {
            uint8_t state = proc_of(pid)->state;
            if (state == P_READY || state == P_RUNNING)
                sb_printf(&out, "%s%" PRIu32, n++ ? "," : "", pid);
        }
    }
    sb_printf(&out, "]}\n");
}

static void view_context(const context *c)
{
    int i;
    sb_printf(&out, "{\"regs\":[");
    for (i = 0; i < REGISTERS; i++)
        sb_printf(&out, "%s%" PRIu32, i ? "," : "", c->regs[i]);
    sb_printf(&out, "],\"pc\":%" PRIu32 ",\"flags\":%" PRIu32 "}", c->pc, c->flags);
}

static const char *transfer_name(uint8_t op)
{
    return op == OP_READ_IO ? "\"read\"" : op == OP_WRITE_IO ? "\"write\"" : "null";
}

/* The view is what the checks compare with the hardware: every field is
 * what this kernel really believes, derived from the records above. */
static void reply_view(void)
{
    uint32_t pid, vpn, i, n;
    process *current = proc_of(k.current);
    sb_printf(&out, "{\"ok\":{\"processes\":[");
    for (pid = 1; pid <= k.nprocs; pid++) {
        process *p = proc_of(pid);
        int first_page = 1;
        sb_printf(&out, "%s{\"pid\":%" PRIu32 ",\"asid\":%" PRIu32
                        ",\"state\":\"%s\",\"root\":%" PRIu32 ",\"pages\":[",
                  pid > 1 ? "," : "", pid, pid, STATE_NAMES[p->state], p->root);
        for (vpn = 0; p->pages && vpn < cfg.va_pages; vpn++) {
            int kind;
            uint32_t prot, index;
            page *pg = &p->pages[vpn];
            int64_t pfn;
            if (!layout(p, vpn, &kind, &prot, &index))
                continue;
            sb_printf(&out, "%s{\"vpn\":%" PRIu32 ",\"prot\":%" PRIu32 ",\"kind\":\"%s\",",
                      first_page ? "" : ",", vpn, prot, KIND_NAMES[kind]);
            first_page = 0;
            if ((pfn = frame_holding(pid, vpn)) >= 0)
                sb_printf(&out, "\"home\":{\"where\":\"frame\",\"index\":%" PRId64 "}", pfn);
            else if (pg->where == W_ZERO)
                sb_printf(&out, "\"home\":{\"where\":\"zero\",\"index\":0}");
            else
                sb_printf(&out, "\"home\":{\"where\":\"%s\",\"index\":%" PRIu32 "}",
                          pg->where == W_IMAGE ? "image" : "slot", pg->source);
            /* Text is program text to the spec ("text:NAME", shared by name);
             * this kernel gives each process its own read-only copy, which the
             * checks allow for pages nobody can write. */
            if (kind == K_TEXT) {
                sbuf key = {0};
                sb_printf(&key, "text:%s", p->name);
                sb_printf(&out, ",\"shared_key\":");
                sb_json_string(&out, key.data, key.len);
                free(key.data);
            } else {
                sb_printf(&out, ",\"shared_key\":null");
            }
            sb_printf(&out, ",\"index\":%" PRIu32 "}", index);
        }
        sb_printf(&out, "],\"context\":");
        if (p->has_context)
            view_context(&p->saved);
        else
            sb_printf(&out, "null");
        sb_printf(&out, ",\"faulting\":%s}", p->state == P_BLOCKED ? "true" : "false");
    }
    sb_printf(&out, "],\"frames\":[");
    for (i = 0; i < cfg.user_frames; i++) {
        frame *f = &k.frames[i];
        const char *status = f->op != OP_NONE ? "busy" : f->hpid ? "in_use" : "free";
        sb_printf(&out, "%s{\"pfn\":%" PRIu32 ",\"status\":\"%s\",\"refcount\":%d,\"users\":[",
                  i ? "," : "", cfg.first_user_pfn + i, status, f->mapped ? 1 : 0);
        if (f->mapped)
            sb_printf(&out, "[%" PRIu32 ",%" PRIu32 "]", f->hpid, f->hvpn);
        sb_printf(&out, "],\"transfer\":%s}", transfer_name(f->op));
    }
    sb_printf(&out, "],\"free_frames\":[");
    for (i = 0, n = 0; i < cfg.user_frames; i++)
        if (frame_free(&k.frames[i]))
            sb_printf(&out, "%s%" PRIu32, n++ ? "," : "", cfg.first_user_pfn + i);
    sb_printf(&out, "],\"slots\":[");
    for (i = 0, n = 0; i < cfg.swap_slots; i++) {
        slot *s = &k.slots[i];
        uint8_t op = OP_NONE;
        uint32_t j;
        if (s->state == S_FREE)
            continue;
        for (j = 0; j < cfg.user_frames; j++)
            if (k.frames[j].op != OP_NONE && k.frames[j].block == i)
                op = k.frames[j].op;
        sb_printf(&out, "%s{\"slot\":%" PRIu32 ",\"refcount\":%d,\"users\":[", n++ ? "," : "",
                  i, s->state == S_OWNED ? 1 : 0);
        if (s->state == S_OWNED)
            sb_printf(&out, "[%" PRIu32 ",%" PRIu32 "]", s->pid, s->vpn);
        sb_printf(&out, "],\"transfer\":%s}", transfer_name(op));
    }
    sb_printf(&out, "],\"free_slots\":[");
    for (i = 0, n = 0; i < cfg.swap_slots; i++)
        if (k.slots[i].state == S_FREE)
            sb_printf(&out, "%s%" PRIu32, n++ ? "," : "", i);
    if (current && current->state == P_RUNNING)
        sb_printf(&out, "],\"current\":%" PRIu32 "}}\n", k.current);
    else
        sb_printf(&out, "],\"current\":null}}\n");
}

/* ------------------------------------------------------------------------- */
/* save and restore: the whole state as hex                                  */
/* ------------------------------------------------------------------------- */

static void put32(sbuf *b, uint32_t v)
{
    unsigned char bytes[4];
    bytes[0] = (unsigned char)v;
    bytes[1] = (unsigned char)(v >> 8);
    bytes[2] = (unsigned char)(v >> 16);
    bytes[3] = (unsigned char)(v >> 24);
    sb_add(b, bytes, 4);
}

#define SAVE_MAGIC 0x4B434750u /* "PGCK" */

static void serialise(sbuf *b)
{
    uint32_t i, pid, vpn;
    put32(b, SAVE_MAGIC);
    put32(b, k.next_pid);
    put32(b, k.current);
    put32(b, k.exclusive);
    for (i = 0; i < cfg.user_frames; i++) {
        frame *f = &k.frames[i];
        put32(b, f->hpid);
        put32(b, f->hvpn);
        put32(b, f->ipid);
        put32(b, f->ivpn);
        put32(b, (uint32_t)f->mapped | (uint32_t)f->op << 8);
        put32(b, f->op ? f->id : 0);
        put32(b, f->op ? f->block : 0);
    }
    put32(b, k.nfifo);
    for (i = 0; i < k.nfifo; i++)
        put32(b, k.fifo[i]);
    for (i = 0; i < cfg.swap_slots; i++) {
        put32(b, k.slots[i].state);
        put32(b, k.slots[i].pid);
        put32(b, k.slots[i].vpn);
    }
    for (i = 0; i < cfg.kernel_words; i += 32) {
        uint32_t bitsword = 0, j;
        for (j = 0; j < 32 && i + j < cfg.kernel_words; j++)
            bitsword |= (uint32_t)(k.kused[i + j] != 0) << j;
        put32(b, bitsword);
    }
    put32(b, k.nprocs);
    for (pid = 1; pid <= k.nprocs; pid++) {
        process *p = proc_of(pid);
        uint32_t namelen = p->name ? (uint32_t)strlen(p->name) : 0;
        put32(b, p->state);
        put32(b, p->root);
        put32(b, p->has_context);
        for (i = 0; i < REGISTERS; i++)
            put32(b, p->saved.regs[i]);
        put32(b, p->saved.pc);
        put32(b, p->saved.flags);
        put32(b, (uint32_t)p->fault_vpn);
        put32(b, p->ticket);
        put32(b, p->ran);
        put32(b, p->npinned);
        for (i = 0; i < p->npinned; i++)
            put32(b, p->pinned[i]);
        put32(b, p->text_pages);
        put32(b, p->data_pages);
        put32(b, p->heap_pages);
        put32(b, p->stack_pages);
        put32(b, namelen);
        if (namelen)
            sb_add(b, p->name, namelen);
        put32(b, p->pages != NULL);
        for (vpn = 0; p->pages && vpn < cfg.va_pages; vpn++) {
            page *pg = &p->pages[vpn];
            if (!valid_page(p, vpn))
                continue;
            put32(b, (uint32_t)pg->dirty | (uint32_t)pg->where << 8);
            put32(b, pg->source);
            put32(b, (uint32_t)pg->slot);
        }
    }
}

static void reply_save(void)
{
    static const char digits[] = "0123456789abcdef";
    sbuf b = {0};
    size_t i;
    serialise(&b);
    sb_reserve(&out, b.len * 2 + 16);
    sb_printf(&out, "{\"ok\":\"");
    for (i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        out.data[out.len++] = digits[c >> 4];
        out.data[out.len++] = digits[c & 15];
    }
    out.data[out.len] = '\0';
    sb_printf(&out, "\"}\n");
    free(b.data);
}

typedef struct {
    const unsigned char *data;
    size_t len, at;
} cursor;

static uint32_t get32(cursor *c)
{
    uint32_t v;
    if (c->len - c->at < 4)
        FAIL("interface_error", "restore: the state ends early: not one this kernel saved");
    v = (uint32_t)c->data[c->at] | (uint32_t)c->data[c->at + 1] << 8 |
        (uint32_t)c->data[c->at + 2] << 16 | (uint32_t)c->data[c->at + 3] << 24;
    c->at += 4;
    return v;
}

static uint32_t get_bounded(cursor *c, uint32_t high, const char *what)
{
    uint32_t v = get32(c);
    if (v > high)
        FAIL("interface_error", "restore: %s %" PRIu32 " is out of range", what, v);
    return v;
}

static void free_processes(void)
{
    uint32_t pid;
    for (pid = 1; pid <= k.nprocs; pid++) {
        free(k.procs[pid - 1].pages);
        free(k.procs[pid - 1].name);
    }
    free(k.procs);
    k.procs = NULL;
    k.nprocs = 0;
}

static void call_restore(const jv *message)
{
    const char *hex = need_str(jget(message, "state"), "restore state");
    size_t n = strlen(hex), i;
    unsigned char *bytes;
    cursor c;
    uint32_t pid, vpn, nprocs, u = cfg.first_user_pfn + cfg.user_frames;
    if (n % 2)
        FAIL("interface_error", "restore: the state is not hex");
    bytes = xcalloc(n / 2 + 1, 1);
    for (i = 0; i < n / 2; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(bytes);
            FAIL("interface_error", "restore: the state is not hex");
        }
        bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    c.data = bytes;
    c.len = n / 2;
    c.at = 0;
    /* The state is read over the current one: a state this kernel saved is
     * always whole, and a broken one fails the request, after which the
     * checker restores another. */
    if (get32(&c) != SAVE_MAGIC) {
        free(bytes);
        FAIL("interface_error", "restore: not a state this kernel saved");
    }
    free_processes();
    k.next_pid = get32(&c);
    k.current = get32(&c);
    k.exclusive = get32(&c);
    for (i = 0; i < cfg.user_frames; i++) {
        frame *f = &k.frames[i];
        uint32_t flags;
        f->hpid = get32(&c);
        f->hvpn = get_bounded(&c, cfg.va_pages - 1, "vpn");
        f->ipid = get32(&c);
        f->ivpn = get_bounded(&c, cfg.va_pages - 1, "vpn");
        flags = get32(&c);
        f->mapped = (uint8_t)(flags & 1);
        f->op = (uint8_t)(flags >> 8 & 3);
        f->id = get32(&c);
        f->block = get32(&c);
    }
    k.nfifo = get_bounded(&c, cfg.user_frames, "fifo length");
    for (i = 0; i < k.nfifo; i++) {
        k.fifo[i] = get32(&c);
        if (k.fifo[i] < cfg.first_user_pfn || k.fifo[i] >= u)
            FAIL("interface_error", "restore: a FIFO entry is not a user frame");
    }
    for (i = 0; i < cfg.swap_slots; i++) {
        k.slots[i].state = (uint8_t)get_bounded(&c, S_ORPHAN, "slot state");
        k.slots[i].pid = get32(&c);
        k.slots[i].vpn = get32(&c);
    }
    for (i = 0; i < cfg.kernel_words; i += 32) {
        uint32_t bitsword = get32(&c), j;
        for (j = 0; j < 32 && i + j < cfg.kernel_words; j++)
            k.kused[i + j] = (uint8_t)(bitsword >> j & 1);
    }
    nprocs = get_bounded(&c, 1u << 30, "process count");
    k.procs = xcalloc(nprocs, sizeof *k.procs);
    k.nprocs = nprocs;
    for (pid = 1; pid <= nprocs; pid++) {
        process *p = proc_of(pid);
        uint32_t namelen;
        p->state = (uint8_t)get_bounded(&c, P_EXITED, "process state");
        p->root = get_bounded(&c, cfg.kernel_words, "root");
        p->has_context = (uint8_t)get_bounded(&c, 1, "flag");
        for (i = 0; i < REGISTERS; i++)
            p->saved.regs[i] = get32(&c);
        p->saved.pc = get32(&c);
        p->saved.flags = get_bounded(&c, 3, "flags");
        p->fault_vpn = (int32_t)get32(&c);
        p->ticket = get32(&c);
        p->ran = (uint8_t)get_bounded(&c, 1, "flag");
        p->npinned = (uint8_t)get_bounded(&c, MAX_PINNED, "pin count");
        for (i = 0; i < p->npinned; i++)
            p->pinned[i] = get_bounded(&c, cfg.va_pages - 1, "vpn");
        p->text_pages = get_bounded(&c, cfg.va_pages, "page count");
        p->data_pages = get_bounded(&c, cfg.va_pages, "page count");
        p->heap_pages = get_bounded(&c, cfg.va_pages, "page count");
        p->stack_pages = get_bounded(&c, cfg.va_pages, "page count");
        namelen = get_bounded(&c, (uint32_t)(c.len - c.at), "name length");
        p->name = xcalloc(namelen + 1, 1);
        memcpy(p->name, c.data + c.at, namelen);
        c.at += namelen;
        if (get_bounded(&c, 1, "flag")) {
            p->pages = xcalloc(cfg.va_pages, sizeof *p->pages);
            for (vpn = 0; vpn < cfg.va_pages; vpn++) {
                page *pg = &p->pages[vpn];
                uint32_t flags;
                pg->slot = -1;
                if (!valid_page(p, vpn))
                    continue;
                flags = get32(&c);
                pg->dirty = (uint8_t)(flags & 1);
                pg->where = (uint8_t)(flags >> 8 & 3);
                pg->source = get32(&c);
                pg->slot = (int32_t)get32(&c);
            }
        }
    }
    if (c.at != c.len) {
        free(bytes);
        FAIL("interface_error", "restore: the state has more than this kernel saved");
    }
    free(bytes);
    sb_printf(&out, "{\"ok\":null}\n");
}

/* ------------------------------------------------------------------------- */
/* hello: the machine, and what this kernel refuses                          */
/* ------------------------------------------------------------------------- */

static const char *config_string(const jv *section, const char *key, const char *fallback)
{
    const jv *v = jget(section, key);
    return v && v->type == J_STR ? v->str : fallback;
}

static uint32_t config_int(const jv *section, const char *section_name, const char *key,
                           uint32_t low)
{
    const jv *v = jget(section, key);
    if (!v || v->type != J_INT || v->num < (long long)low || v->num > (1LL << 30))
        FAIL("interface_error", "hello: %s.%s is missing or out of range", section_name, key);
    return (uint32_t)v->num;
}

static void free_state(void)
{
    free_processes();
    free(k.frames);
    free(k.fifo);
    free(k.slots);
    free(k.kused);
    free(memory);
    free(scratch_memory);
    free(scratch_used);
    memset(&k, 0, sizeof k);
    memory = scratch_memory = NULL;
    scratch_used = NULL;
}

/* Refuse the configuration: a clear line on stderr, and a failed reply, so
 * pagingcheck stops with this message instead of checking a kernel that
 * would be wrong for the machine. */
#define UNSUPPORTED(...)                                                                   \
    do {                                                                                   \
        char why_[300];                                                                    \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                          \
        FAIL("interface_error", "unsupported configuration: %s (this kernel supports "     \
                                "linear and multilevel tables, a hardware-refilled TLB, "  \
                                "every restart variant, and global FIFO replacement with " \
                                "no prepaging or cleaner)",                                \
             why_);                                                                        \
    } while (0)

/* The vpn bits each level indexes, root first, as hardware.level_bits gives them. */
static void take_split(const jv *split, uint32_t va_bits)
{
    const jv *slice;
    uint32_t i = 0, sum = 0;
    if (split->count != cfg.levels)
        FAIL("interface_error", "hello: hardware.level_bits has %zu slices for %" PRIu32 " levels",
             split->count, cfg.levels);
    for (slice = split->first; slice; slice = slice->next, i++) {
        cfg.level_bits[i] = (uint32_t)need_int(slice, "hello hardware.level_bits", 1, 32);
        sum += cfg.level_bits[i];
    }
    if (sum != va_bits)
        FAIL("interface_error", "hello: hardware.level_bits add up to %" PRIu32 ", not %" PRIu32,
             sum, va_bits);
}

static void call_hello(const jv *message)
{
    const jv *hw = need(jget(message, "hardware"), J_OBJ, "hello hardware");
    const jv *kn = need(jget(message, "kernel"), J_OBJ, "hello kernel");
    const char *table = config_string(hw, "page_table", "?");
    const char *refill = config_string(hw, "tlb_refill", "?");
    const char *restart = config_string(hw, "restart", "?");
    const char *policy = config_string(kn, "policy", "fifo");
    const char *allocation = config_string(kn, "allocation", "global");
    const jv *prepage = jget(kn, "prepage"), *cleaner = jget(kn, "cleaner");
    const jv *tagged = need(jget(hw, "tlb_tagged"), J_BOOL, "hello hardware.tlb_tagged");
    const jv *split = jget(hw, "level_bits");
    uint32_t va_bits = 0, i, shift = 0, share, extra;

    if (need_int(jget(message, "protocol"), "hello protocol", 0, WORD_MAX) != PROTOCOL_VERSION)
        FAIL("interface_error", "hello: this kernel speaks protocol version %d only",
             PROTOCOL_VERSION);
    free_state();
    cfg.ready = 0;
    cfg.page_words = config_int(hw, "hardware", "page_words", 1);
    cfg.va_pages = config_int(hw, "hardware", "va_pages", 1);
    cfg.kernel_frames = config_int(hw, "hardware", "kernel_frames", 1);
    cfg.user_frames = config_int(hw, "hardware", "user_frames", 1);
    cfg.swap_slots = config_int(hw, "hardware", "swap_slots", 0);
    cfg.image_blocks = config_int(hw, "hardware", "image_blocks", 0);
    cfg.levels = config_int(hw, "hardware", "levels", 1);
    cfg.tagged = tagged->boolean;
    if (strcmp(table, "linear") == 0) {
        cfg.table_kind = "linear";
        cfg.levels = 1;
    } else if (strcmp(table, "multilevel") == 0) {
        cfg.table_kind = "multilevel";
    } else {
        UNSUPPORTED("hardware.page_table is '%s'", table);
    }
    if (strcmp(refill, "hardware") != 0)
        UNSUPPORTED("hardware.tlb_refill is '%s'", refill);
    for (i = 0; i < 3; i++)
        if (strcmp(restart, RESTART_NAMES[i]) == 0)
            break;
    if (i == 3)
        UNSUPPORTED("hardware.restart is '%s'", restart);
    cfg.restart = (enum restart)i;
    if (strcmp(policy, "fifo") != 0)
        UNSUPPORTED("kernel.policy is '%s'", policy);
    if (strcmp(allocation, "global") != 0)
        UNSUPPORTED("kernel.allocation is '%s'", allocation);
    if (prepage && !(prepage->type == J_STR && strcmp(prepage->str, "none") == 0))
        UNSUPPORTED("kernel.prepage is not 'none'");
    if (cleaner && cleaner->type == J_BOOL && cleaner->boolean)
        UNSUPPORTED("kernel.cleaner is true");
    while ((1u << va_bits) < cfg.va_pages)
        va_bits++;
    if ((1u << va_bits) != cfg.va_pages || cfg.levels > va_bits || cfg.levels > 32 ||
        (uint64_t)(cfg.kernel_frames + cfg.user_frames) * cfg.page_words > (1u << 24))
        UNSUPPORTED("the machine's sizes (va_pages %" PRIu32 ", levels %" PRIu32 ")",
                    cfg.va_pages, cfg.levels);
    share = va_bits / cfg.levels;
    extra = va_bits % cfg.levels;
    for (i = 0; i < cfg.levels; i++)
        cfg.level_bits[i] = share + (i < extra ? 1 : 0);
    if (cfg.levels > 1 && split && split->type == J_ARR && split->count > 0)
        take_split(split, va_bits);
    for (i = cfg.levels; i-- > 0;) {
        cfg.level_shift[i] = shift;
        shift += cfg.level_bits[i];
    }
    cfg.first_user_pfn = cfg.kernel_frames;
    cfg.kernel_words = cfg.kernel_frames * cfg.page_words;
    cfg.memory_words = (cfg.kernel_frames + cfg.user_frames) * cfg.page_words;

    memory = xcalloc(cfg.memory_words, sizeof *memory);
    scratch_memory = xcalloc(cfg.kernel_words, sizeof *scratch_memory);
    scratch_used = xcalloc(cfg.kernel_words, 1);
    k.frames = xcalloc(cfg.user_frames, sizeof *k.frames);
    k.fifo = xcalloc(cfg.user_frames, sizeof *k.fifo);
    k.slots = xcalloc(cfg.swap_slots, sizeof *k.slots);
    k.kused = xcalloc(cfg.kernel_words, 1);
    k.next_pid = 1;
    cfg.ready = 1;
    sb_printf(&out, "{\"ok\":{\"protocol\":%d,\"save\":true,\"fingerprint\":false}}\n",
              PROTOCOL_VERSION);
}

/* ------------------------------------------------------------------------- */
/* The request loop                                                          */
/* ------------------------------------------------------------------------- */

static void apply_memory(const jv *changes)
{
    const jv *pair;
    for (pair = changes->first; pair; pair = pair->next) {
        long long pa, word;
        need(pair, J_ARR, "memory entry");
        if (pair->count != 2)
            FAIL("interface_error", "memory entry: expected [pa, word]");
        pa = need_int(pair->first, "memory pa", 0, (long long)cfg.memory_words - 1);
        word = need_int(pair->first->next, "memory word", 0, WORD_MAX);
        memory[pa] = (uint32_t)word;
    }
}

static void read_context(const jv *json, context *c)
{
    const jv *regs = need(jget(json, "regs"), J_ARR, "context regs"), *r;
    int i = 0;
    if (regs->count != REGISTERS)
        FAIL("interface_error", "context: expected %d registers", REGISTERS);
    for (r = regs->first; r; r = r->next)
        c->regs[i++] = (uint32_t)need_int(r, "context register", 0, WORD_MAX);
    c->pc = (uint32_t)need_int(jget(json, "pc"), "context pc", 0, WORD_MAX);
    c->flags = (uint32_t)need_int(jget(json, "flags"), "context flags", 0, 3);
}

static void call(const jv *message)
{
    const char *name = need_str(jget(message, "name"), "call name");
    const jv *args = need(jget(message, "args"), J_OBJ, "call args");
    apply_memory(need(jget(message, "memory"), J_ARR, "call memory"));
    read_context(need(jget(message, "context"), J_OBJ, "call context"), &entry_context);
    events.len = 0;
    nevents = 0;
    if (verbose)
        fprintf(stderr, "kernel.c: call %s\n", name);
    if (strcmp(name, "boot") == 0)
        call_boot();
    else if (strcmp(name, "spawn") == 0)
        call_spawn(args);
    else if (strcmp(name, "dispatch") == 0)
        call_dispatch(args);
    else if (strcmp(name, "on_trap") == 0)
        call_on_trap(args);
    else if (strcmp(name, "on_disk") == 0)
        call_on_disk(args);
    else if (strcmp(name, "on_timer") == 0)
        call_on_timer();
    else if (strcmp(name, "kill") == 0)
        call_kill(args);
    else
        FAIL("interface_error", "unknown call %s", name);
}

static void handle(const jv *message)
{
    const char *op;
    if (!message || message->type != J_OBJ)
        FAIL("interface_error", "the request is not a JSON object");
    op = need_str(jget(message, "op"), "request op");
    if (strcmp(op, "hello") == 0) {
        call_hello(message);
        return;
    }
    if (!cfg.ready)
        FAIL("interface_error", "%s before a hello this kernel accepted", op);
    if (strcmp(op, "call") == 0)
        call(message);
    else if (strcmp(op, "runnable") == 0)
        reply_runnable();
    else if (strcmp(op, "view") == 0)
        reply_view();
    else if (strcmp(op, "save") == 0)
        reply_save();
    else if (strcmp(op, "restore") == 0)
        call_restore(message);
    else
        FAIL("interface_error", "unknown request %s (this kernel offers no fingerprint)", op);
}

int main(int argc, char **argv)
{
    static reader requests;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else {
            fprintf(stderr, "usage: %s [--verbose]\n(a kernel for pagingcheck: run it with "
                            "pagingcheck validate --exec)\n",
                    argv[0]);
            return 2;
        }
    }
    while (read_line(&requests)) {
        const jv *message;
        if (setjmp(request_failed))
            continue; /* the failed reply is sent; wait for the next request */
        message = parse_line(&requests);
        if (!message)
            FAIL("interface_error", "the request is not JSON (%s)", requests.error);
        handle(message);
        send();
    }
    free_state();
    for (i = 0; i < 2; i++) {
        reader *r = i ? &answers : &requests;
        size_t b;
        for (b = 0; b < r->nblocks; b++)
            free(r->blocks[b]);
        free(r->blocks);
        free(r->line);
    }
    free(out.data);
    free(events.data);
    return 0;
}
