/*
 * qtl — quantized tensor-parallel loading of Hugging Face safetensors checkpoints.
 *
 * This header is the manual. Conventions used everywhere:
 *
 *  1. Every fallible call returns `int`: 0 (QTL_OK) on success, a negative
 *     `enum qtl_status` value on failure. Values are pinned and never reused.
 *     qtl_strerror() / qtl_errname() describe a code.
 *  2. Handles are opaque (`qtl_st_t`, `qtl_ckpt_t`, `qtl_st_writer_t`). Each keeps
 *     a message describing its last failure with context (file, tensor, rule),
 *     e.g. "model-00002-of-00004.safetensors: tensor 'x.weight': data_offsets
 *     [1024,2048] overlap previous tensor ending at 1536". Read it with
 *     qtl_<noun>_errmsg().
 *  3. Openers follow SQLite's rule: on failure they still return a handle that
 *     holds the message (except when the handle itself could not be allocated:
 *     then *out is NULL and the status is QTL_ERR_NOMEM). Close it in both cases.
 *  4. Every handle takes an optional allocator {alloc, free, opaque}; NULL means
 *     malloc/free. Memory returned through `const` pointers belongs to the handle
 *     and stays valid until that handle is closed, unless documented otherwise.
 *  5. Nothing in qtl aborts, asserts or reads out of bounds because of file
 *     contents: every size read from a file is checked for overflow and against
 *     the bytes that exist before anything is allocated or read.
 *  6. Statuses say whose fault a failure is: QTL_ERR_INVALID_ARGUMENT is caller
 *     misuse (a NULL path, an index out of range, a buffer of the wrong size, a
 *     call out of order); what is wrong with the files has its own codes — the
 *     safetensors rules (-20..-33), the checkpoint directory (-40..-45), and
 *     QTL_ERR_CHECKPOINT for a loading rule the contents break (an unwritten
 *     scale, a tensor no parameter takes, a wrong shape: the findings say which).
 *     Every handle offers the pair qtl_<noun>_errcode() / qtl_<noun>_errmsg()
 *     for its last failure; a NULL handle reads as QTL_ERR_NOMEM / "out of memory".
 *  7. Threads: the library has no global state except the jansson hooks the
 *     caller installs. Distinct handles may be used from distinct threads at
 *     once; one handle is not safe for concurrent calls (qtl_load_run uses its
 *     own worker threads inside one call). A handle's const getters may be called
 *     from several threads at once while no other call runs on it.
 *  8. Pointers a handle returns (names, infos, messages, parameter data) stay
 *     valid until the handle is closed, except: an errmsg() string changes on the
 *     next failing call on that handle; qtl_load_param_at's data is NULL until
 *     qtl_load_run and is replaced by qtl_load_process (re-read the info after
 *     it); qtl_ckpt_shard's qtl_st_t belongs to the checkpoint.
 *
 * safetensors in thirty lines (the rules qtl enforces; see formats.md §1):
 *   offset 0     u64 little-endian N = header length, N <= max_header_bytes (1e8)
 *   offset 8     N bytes of UTF-8 JSON, optionally padded with JSON whitespace:
 *                { "__metadata__": {string: string, ...},            (optional)
 *                  "<tensor name>": { "dtype": "F32", "shape": [d0, ...],
 *                                     "data_offsets": [begin, end] }, ... }
 *   offset 8+N   data buffer; offsets are relative to it.
 *   Validation, in the reference crate's order:
 *     file < 8 bytes                          QTL_ERR_HEADER_TOO_SMALL
 *     N > limit                               QTL_ERR_HEADER_TOO_LARGE
 *     8 + N > file size                       QTL_ERR_INVALID_HEADER_LENGTH
 *     header not UTF-8                        QTL_ERR_INVALID_HEADER
 *     JSON / schema / unknown dtype           QTL_ERR_INVALID_HEADER_DESER
 *     duplicate key (qtl is stricter here)    QTL_ERR_DUPLICATE_KEY
 *     sorted by begin: begin != running end   QTL_ERR_INVALID_OFFSET
 *     or end < begin
 *     numel or numel*bits overflows u64       QTL_ERR_VALIDATION_OVERFLOW
 *     numel*bits not a multiple of 8          QTL_ERR_MISALIGNED_SLICE
 *     end - begin != numel*bits/8             QTL_ERR_TENSOR_INVALID_INFO
 *     8 + N + last end != file size           QTL_ERR_TRUNCATED (file short)
 *                                             QTL_ERR_INCOMPLETE_BUFFER (trailing bytes)
 *   Before the length check qtl recognises a git-lfs pointer
 *   (QTL_ERR_LFS_POINTER) and an HTML/text page (QTL_ERR_NOT_SAFETENSORS).
 *   Tensors are little-endian, C order, dense; rank-0 ("shape": []) holds one
 *   element; a zero dimension gives an empty tensor with begin == end.
 */
#ifndef QTL_H
#define QTL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(QTL_BUILDING) && defined(__GNUC__)
#define QTL_API __attribute__((visibility("default")))
#else
#define QTL_API
#endif

/* ---- version ------------------------------------------------------------ */
#define QTL_VERSION_MAJOR 0
#define QTL_VERSION_MINOR 1
#define QTL_VERSION_PATCH 0
#define QTL_VERSION_NUMBER (QTL_VERSION_MAJOR * 10000 + QTL_VERSION_MINOR * 100 + QTL_VERSION_PATCH)

/*! qtl_version_string() : @return "MAJOR.MINOR.PATCH", static storage. */
QTL_API const char *qtl_version_string(void);
/*! qtl_version_number() : @return QTL_VERSION_NUMBER of the library linked. */
QTL_API unsigned qtl_version_number(void);

/* ---- status codes ------------------------------------------------------- */
/* XX(name, value, description). Values are pinned; gaps are deliberate. The
 * safetensors codes carry the reference crate's error name in their text. */
#define QTL_STATUS_MAP(XX)                                                                         \
    XX(OK, 0, "success")                                                                           \
    XX(INVALID_ARGUMENT, -1, "invalid argument")                                                   \
    XX(NOMEM, -2, "out of memory")                                                                 \
    XX(IO, -3, "I/O error")                                                                        \
    XX(OPEN, -4, "cannot open file")                                                               \
    XX(NOT_FOUND, -5, "tensor not found (TensorNotFound)")                                         \
    XX(UNSUPPORTED, -6, "unsupported")                                                             \
    XX(RANGE, -7, "byte range outside the tensor")                                                 \
    XX(HEADER_TOO_SMALL, -20, "file shorter than 8 bytes (HeaderTooSmall)")                        \
    XX(HEADER_TOO_LARGE, -21, "header length above the limit (HeaderTooLarge)")                    \
    XX(INVALID_HEADER_LENGTH, -22, "header runs past the end of the file (InvalidHeaderLength)")   \
    XX(INVALID_HEADER, -23, "header is not valid UTF-8 (InvalidHeader)")                           \
    XX(INVALID_HEADER_DESER, -24, "header is not valid JSON of the safetensors schema "            \
                                  "(InvalidHeaderDeserialization)")                                \
    XX(DUPLICATE_KEY, -25, "duplicate key in header JSON")                                         \
    XX(INVALID_OFFSET, -26, "data_offsets not contiguous from 0 (InvalidOffset)")                  \
    XX(VALIDATION_OVERFLOW, -27, "tensor size overflows (ValidationOverflow)")                     \
    XX(MISALIGNED_SLICE, -28, "sub-byte tensor does not end on a byte (MisalignedSlice)")          \
    XX(TENSOR_INVALID_INFO, -29, "data_offsets disagree with dtype and shape (TensorInvalidInfo)") \
    XX(INCOMPLETE_BUFFER, -30, "bytes after the last tensor (MetadataIncompleteBuffer)")           \
    XX(TRUNCATED, -31, "file truncated (MetadataIncompleteBuffer)")                                \
    XX(LFS_POINTER, -32, "git-lfs pointer file, not the checkpoint data")                          \
    XX(NOT_SAFETENSORS, -33, "not a safetensors file")                                             \
    XX(INDEX, -40, "malformed model.safetensors.index.json")                                       \
    XX(SHARD_MISSING, -41, "shard file listed in the index is missing")                            \
    XX(TENSOR_MISSING, -42, "index entry names a tensor its shard does not hold")                  \
    XX(TENSOR_DUPLICATE, -43, "tensor stored in more than one shard")                              \
    XX(JSON, -44, "malformed JSON file")                                                           \
    XX(NO_CHECKPOINT, -45, "no safetensors checkpoint at this path")                              \
    XX(CHECKPOINT, -46, "the checkpoint's contents break a loading rule (a finding names the rule and tensor)")

enum qtl_status {
#define QTL_XX_ENUM(name, value, text) QTL_ERR_##name = value,
    QTL_STATUS_MAP(QTL_XX_ENUM)
#undef QTL_XX_ENUM
};
#define QTL_OK QTL_ERR_OK

/*! qtl_strerror() : @return a one-line description of `status`; static storage. */
QTL_API const char *qtl_strerror(int status);
/*! qtl_errname() : @return the code's name without prefix ("INVALID_OFFSET"),
 *  "UNKNOWN" for a value outside the table; static storage. */
QTL_API const char *qtl_errname(int status);

/* ---- findings ------------------------------------------------------------
 * Every finding qtl reports (struct qtl_diag, qtl verify's "findings") carries
 * one of these IDs. The ID strings are a stable interface (--allow, JSON
 * output, scripts): never renamed. The enum values follow the table's order
 * and may change between versions. The severity is the one reported unless
 * the caller changes it: `allow` downgrades loader errors to warnings, and
 * verify reports a tp size it was not asked for as info.
 * XX(NAME, "id", default severity, "what it means"). */
enum qtl_severity { QTL_SEV_INFO = 0, QTL_SEV_WARNING = 1, QTL_SEV_ERROR = 2 };

#define QTL_FINDING_MAP(XX)                                                                                          \
    /* the checkpoint's files (qtl_ckpt_check) */                                                                    \
    XX(SHARD_MISSING, "shard-missing", QTL_SEV_ERROR, "a shard file the index lists does not exist")                 \
    XX(SHARD_INVALID, "shard-invalid", QTL_SEV_ERROR,                                                                \
       "a shard file is not valid safetensors (truncated, a git-lfs pointer, a bad header)")                         \
    XX(TENSOR_MISSING, "tensor-missing", QTL_SEV_ERROR, "the index maps a tensor to a shard that does not hold it")  \
    XX(TENSOR_DUPLICATE, "tensor-duplicate", QTL_SEV_ERROR, "a tensor is stored in more than one shard")             \
    XX(TENSOR_NOT_IN_INDEX, "tensor-not-in-index", QTL_SEV_WARNING,                                                  \
       "a shard holds a tensor the index does not list (vLLM still loads it)")                                       \
    /* the layout at this tp: qtl_load_open fails, qtl_load_fail_id names it */                                      \
    XX(CONFIG_UNSUPPORTED, "config.unsupported", QTL_SEV_ERROR,                                                      \
       "the config asks for a quantization method or layer scheme qtl (like vLLM) does not load")                    \
    XX(TP_HEADS, "tp.heads", QTL_SEV_ERROR, "num_attention_heads is not divisible by tp")                            \
    XX(TP_KV_HEADS, "tp.kv-heads", QTL_SEV_ERROR, "neither num_key_value_heads nor tp divides the other")            \
    XX(TP_INTERMEDIATE, "tp.intermediate", QTL_SEV_ERROR, "intermediate_size is not divisible by tp")                \
    XX(TP_VOCAB, "tp.vocab", QTL_SEV_ERROR, "the padded vocabulary is not divisible by tp")                          \
    XX(TP_BLOCK, "tp.block", QTL_SEV_ERROR, "a per-rank partition is not a multiple of the FP8 weight block")        \
    XX(TP_GROUP, "tp.group", QTL_SEV_ERROR, "a per-rank input partition is not a multiple of group_size")            \
    XX(TP_NVFP4, "tp.nvfp4", QTL_SEV_ERROR, "a per-rank input partition is not a multiple of the NVFP4 group (16)")  \
    XX(TP_PACK, "tp.pack", QTL_SEV_ERROR, "a per-rank partition is not a multiple of the zero-point pack factor")    \
    /* the plan (qtl_load_open), before any tensor data is read */                                                   \
    XX(TENSOR_UNMAPPED, "tensor.unmapped", QTL_SEV_ERROR, "a checkpoint tensor no parameter takes")                  \
    XX(TENSOR_SHAPE, "tensor.shape", QTL_SEV_ERROR, "a tensor's shape does not fit the parameter and tp")            \
    XX(TENSOR_DTYPE, "tensor.dtype", QTL_SEV_ERROR, "a tensor's dtype is one the parameter cannot take")             \
    XX(TENSOR_SHARD, "tensor.shard", QTL_SEV_ERROR, "a tensor names a shard id or slot the parameter does not have") \
    XX(SCALE_VECTOR, "scale.vector", QTL_SEV_ERROR, "a per-tensor scale stored as a [n > 1] vector")                 \
    XX(PARAM_UNWRITTEN, "param.unwritten", QTL_SEV_ERROR, "parameter rows no checkpoint tensor writes")              \
    XX(SCALE_UNWRITTEN, "scale.unwritten", QTL_SEV_ERROR,                                                            \
       "scale rows or slots no checkpoint tensor writes (vLLM keeps F32_MIN or garbage there)")                      \
    XX(PARAM_DOUBLE_WRITE, "param.double-write", QTL_SEV_ERROR, "parameter rows written by more than one tensor")    \
    XX(CONSEQUENCE, "consequence", QTL_SEV_INFO,                                                                     \
       "an effect of another finding, its root cause (e.g. rows a failed tensor left unwritten)")                    \
    /* execution (qtl_load_run) and post-processing (qtl_load_process) */                                            \
    XX(TENSOR_READ, "tensor.read", QTL_SEV_ERROR, "reading a tensor's bytes failed (file, tensor, offset, reason)")  \
    XX(FILE_CHANGED, "file.changed", QTL_SEV_ERROR,                                                                  \
       "a shard file's size differs from the plan's when reading starts")                                            \
    XX(SCALE_NAN, "scale.nan", QTL_SEV_ERROR, "a scale holds a NaN")                                                 \
    XX(SCALE_INF, "scale.inf", QTL_SEV_ERROR, "a scale holds an infinity")                                           \
    XX(SCALE_NONPOSITIVE, "scale.nonpositive", QTL_SEV_ERROR, "a scale holds zero or a negative value")              \
    XX(PARAM_OVERWRITE_DIFFERS, "param.overwrite-differs", QTL_SEV_WARNING,                                          \
       "a parameter written whole by several tensors got different values; vLLM keeps the last")                     \
    XX(SCALE_SLOTS_DIFFER, "scale.slots-differ", QTL_SEV_WARNING,                                                    \
       "a fused layer's per-part scales differ; vLLM reduces them with max and requantizes or rescales")             \
    /* qtl verify's own checks */                                                                                    \
    XX(CONFIG_INVALID, "config.invalid", QTL_SEV_ERROR,                                                              \
       "config.json or hf_quant_config.json is unreadable or malformed")                                             \
    XX(LOAD_OPEN, "load.open", QTL_SEV_ERROR,                                                                        \
       "the loader could not open the checkpoint, for a reason other than the layout")                               \
    XX(SCALE_CONVENTION, "scale.convention", QTL_SEV_ERROR,                                                          \
       "an NVFP4 global scale stored in the other exporter's convention (its reciprocal)")                           \
    XX(NAME_FUSED_AND_SPLIT, "name.fused-and-split", QTL_SEV_ERROR,                                                  \
       "a layer is stored both fused (qkv_proj, gate_up_proj) and split (q_proj, gate_proj)")                        \
    XX(NAME_KV_SCALE_LEGACY, "name.kv-scale-legacy", QTL_SEV_WARNING,                                                \
       "k/v scales named on k_proj/v_proj, which vLLM releases before the kv-scale remap mis-map")                   \
    XX(QUANT_LAYER_UNQUANTIZED, "quant.layer-unquantized", QTL_SEV_ERROR,                                            \
       "the config quantizes a linear layer whose tensors are stored 16/32-bit without scales")                      \
    XX(QUANT_LAYER_QUANTIZED, "quant.layer-quantized", QTL_SEV_ERROR,                                                \
       "the config leaves a linear layer unquantized but its tensors are quantized")                                 \
    XX(TP_KV_REPLICATED, "tp.kv-replicated", QTL_SEV_INFO,                                                           \
       "at this tp each kv head is replicated over several ranks")

enum qtl_finding {
#define QTL_XX_ENUM(name, id, severity, doc) QTL_FINDING_##name,
    QTL_FINDING_MAP(QTL_XX_ENUM)
#undef QTL_XX_ENUM
    QTL_FINDING_COUNT
};

/*! qtl_finding_id() : @return the ID ("tensor.shape"), NULL for a value outside the table; static storage. */
QTL_API const char *qtl_finding_id(enum qtl_finding f);
/*! qtl_finding_severity() : @return the default severity, QTL_SEV_ERROR for a value outside the table. */
QTL_API enum qtl_severity qtl_finding_severity(enum qtl_finding f);
/*! qtl_finding_doc() : @return the one-line description, NULL outside the table; static storage. */
QTL_API const char *qtl_finding_doc(enum qtl_finding f);
/*! qtl_finding_lookup() : exact, case-sensitive match of `id`.
 *  @return QTL_OK and *out, or QTL_ERR_INVALID_ARGUMENT for an ID not in the table. */
QTL_API int qtl_finding_lookup(const char *id, enum qtl_finding *out);

/* ---- allocator ---------------------------------------------------------- */
/* Per-handle allocator hooks (zstd's customMem). alloc returns NULL on failure;
 * free accepts NULL. Every allocation a handle makes goes through them, which
 * is how the tests fail the Nth allocation for every N. */
struct qtl_allocator {
    void *(*alloc)(void *opaque, size_t size);
    void (*free)(void *opaque, void *ptr);
    void *opaque;
};

/* ---- dtypes ------------------------------------------------------------- */
/* The safetensors dtypes, numbered in the reference crate's declaration order
 * (which is also the writer's alignment order). */
enum qtl_dtype {
    QTL_DTYPE_BOOL = 0,
    QTL_DTYPE_F4 = 1,      /* FP4 E2M1, 4 bits; shape counts elements */
    QTL_DTYPE_F6_E2M3 = 2, /* 6 bits */
    QTL_DTYPE_F6_E3M2 = 3, /* 6 bits */
    QTL_DTYPE_U8 = 4,
    QTL_DTYPE_I8 = 5,
    QTL_DTYPE_F8_E5M2 = 6,
    QTL_DTYPE_F8_E4M3 = 7, /* E4M3FN: no Inf, 0x7F/0xFF NaN, max 448 */
    QTL_DTYPE_F8_E8M0 = 8, /* 2^(x-127), 0xFF NaN */
    QTL_DTYPE_F8_E4M3FNUZ = 9,
    QTL_DTYPE_F8_E5M2FNUZ = 10,
    QTL_DTYPE_I16 = 11,
    QTL_DTYPE_U16 = 12,
    QTL_DTYPE_F16 = 13,
    QTL_DTYPE_BF16 = 14,
    QTL_DTYPE_I32 = 15,
    QTL_DTYPE_U32 = 16,
    QTL_DTYPE_F32 = 17,
    QTL_DTYPE_C64 = 18,
    QTL_DTYPE_F64 = 19,
    QTL_DTYPE_I64 = 20,
    QTL_DTYPE_U64 = 21,
    QTL_DTYPE_COUNT = 22
};

/*! qtl_dtype_name() : @return the safetensors spelling ("F8_E4M3"), or NULL. */
QTL_API const char *qtl_dtype_name(enum qtl_dtype dtype);
/*! qtl_dtype_bits() : @return bits per element (4, 6, 8, 16, 32, 64), 0 if invalid. */
QTL_API unsigned qtl_dtype_bits(enum qtl_dtype dtype);
/*! qtl_dtype_from_name() : exact, case-sensitive match of `len` bytes of `name`.
 *  @return QTL_OK and *out, or QTL_ERR_INVALID_ARGUMENT. */
QTL_API int qtl_dtype_from_name(const char *name, size_t len, enum qtl_dtype *out);

/* ---- number conversions (exact; src/base/minifloat.c) ---------------------
 * Decoders return the exact value as f32 (every value of these formats is
 * representable). NaN results are the quiet NaN 0x7FC00000 with the code's
 * sign (F16 and BF16 keep their payload; F16 quiets it as F16C does).
 *   E4M3FN  (F8_E4M3)     bias 7, no Inf, NaN = 0x7F/0xFF, max 448, subnormal k*2^-9
 *   E4M3FNUZ              bias 8, no Inf, no -0, NaN = 0x80 only, max 240, subnormal k*2^-10
 *   E5M2                  bias 15, IEEE-like: Inf 0x7C/0xFC, NaN 0x7D-0x7F, max 57344
 *   E5M2FNUZ              bias 16, no Inf, no -0, NaN = 0x80 only, max 57344
 *   E8M0    (F8_E8M0)     2^(x-127), 0xFF = NaN, no zero, no sign
 *   E2M1    (F4)          {0, .5, 1, 1.5, 2, 3, 4, 6} with sign bit 3; in bytes the
 *                         low nibble is the even element, the high nibble the odd one
 * Encoders round to nearest, ties to even, on the f32 value:
 *   qtl_f32_to_e4m3  saturates to +-448 (exporters clamp before casting); NaN -> 0x7F|sign
 *   qtl_f32_to_e2m1  saturates to +-6; keeps the sign of -0 (0x8); NaN -> 0x7|sign
 *   qtl_f32_to_e8m0  RNE in the exponent (ties to the even code); 0 and values below
 *                    2^-127 -> 0x00; negative, NaN, Inf, > 1.5*2^127 -> 0xFF (NaN)
 *   qtl_f32_to_bf16  RNE; NaN -> quiet NaN with the same sign and top payload bits
 *   qtl_f32_to_f16   RNE; overflow -> Inf; subnormals RNE; NaN -> quiet NaN */
QTL_API float qtl_e4m3_to_f32(uint8_t x);
QTL_API float qtl_e4m3fnuz_to_f32(uint8_t x);
QTL_API float qtl_e5m2_to_f32(uint8_t x);
QTL_API float qtl_e5m2fnuz_to_f32(uint8_t x);
QTL_API float qtl_e8m0_to_f32(uint8_t x);
QTL_API float qtl_e2m1_to_f32(uint8_t nibble); /* low 4 bits used */
QTL_API float qtl_bf16_to_f32(uint16_t x);
QTL_API float qtl_f16_to_f32(uint16_t x);
QTL_API uint8_t qtl_f32_to_e4m3(float f);
QTL_API uint8_t qtl_f32_to_e2m1(float f);
QTL_API uint8_t qtl_f32_to_e8m0(float f);
QTL_API uint16_t qtl_f32_to_bf16(float f);
QTL_API uint16_t qtl_f32_to_f16(float f);
/*! qtl_to_f32() : decode `n` elements of `dtype` (BOOL, U8, I8, F8_*, I16, U16,
 *  F16, BF16, I32, U32, F32, I64, U64, F64; F4 two per byte) into f32.
 *  @return QTL_OK, or QTL_ERR_UNSUPPORTED for F6_* and C64. */
QTL_API int qtl_to_f32(enum qtl_dtype dtype, const void *src, size_t n, float *dst);

/* ---- dequantization (src/quant/dequant.c) -----------------------------------
 * A weight is [rows, cols] = [out, in]. The arithmetic is pinned f32, built
 * with -ffp-contract=off (no FMA): the effective scale of a block is computed
 * first, then one multiply per element:
 *   FP8          w = (float)e4m3(q) * s
 *   INT8/packed  w = (float)(q - zp) * s          (zp = 0 when symmetric)
 *   NVFP4 CT     s = (float)e4m3(scale) / global  (global = weight_global_scale)
 *   NVFP4 ModelOpt s = (float)e4m3(scale) * global (global = weight_scale_2)
 *   MXFP4        s = e8m0(scale);  w = e2m1(q) * s
 * where s is the scale of the element's tensor / row / group / block decoded
 * exactly from its dtype (F32, BF16, F16, F8_E4M3, or U8/F8_E8M0 for MX).
 * bf16 output is the RNE rounding of that f32. Fast paths (AVX2, chosen at run
 * time) give bit-identical results; so does any thread count. */
enum qtl_scheme {
    QTL_SCHEME_NONE = 0,           /* F32 / BF16 / F16 weight, converted */
    QTL_SCHEME_FP8 = 1,            /* F8_E4M3 weight */
    QTL_SCHEME_INT8 = 2,           /* I8 weight */
    QTL_SCHEME_NVFP4_CT = 3,       /* U8 [rows, cols/2] E2M1 pairs, E4M3 scale per 16, / global */
    QTL_SCHEME_NVFP4_MODELOPT = 4, /* same, * global (weight_scale_2) */
    QTL_SCHEME_MXFP4 = 5,          /* U8 [rows, cols/2] E2M1 pairs, E8M0 scale per 32 */
    QTL_SCHEME_PACKED_INT = 6,     /* compressed-tensors pack-quantized: I32 words, dense
                                      little-endian bitstream per row, code = q + 2^(bits-1) */
    QTL_SCHEME_COUNT = 7
};

enum qtl_granularity {
    QTL_SCALE_TENSOR = 0,  /* scale[0] */
    QTL_SCALE_CHANNEL = 1, /* scale[r] (shape [rows, 1]) */
    QTL_SCALE_GROUP = 2,   /* scale[r, c / group] or scale[r, g_idx[c]] (shape [rows, ceil(cols/group)]) */
    QTL_SCALE_BLOCK = 3    /* scale[r / block_rows, c / block_cols] (ragged last blocks) */
};

struct qtl_dequant_desc {
    enum qtl_scheme scheme;
    uint64_t rows, cols;             /* logical shape of the weight */
    const void *weight;
    enum qtl_dtype weight_dtype;     /* for QTL_SCHEME_NONE: F32, BF16 or F16 */
    enum qtl_granularity granularity; /* NVFP4 and MXFP4 imply GROUP of 16 / 32 */
    uint32_t group_size;
    uint32_t block_rows, block_cols;
    const void *scale;
    enum qtl_dtype scale_dtype;
    float global_scale;              /* NVFP4 only */
    const void *zero_point;          /* NULL: symmetric. INT8: same layout as the scale.
                                        PACKED_INT: I32 words packed along rows,
                                        [ceil(rows*bits/32), scale columns], code = zp + 2^(bits-1) */
    enum qtl_dtype zero_point_dtype; /* INT8: I8 or I32; PACKED_INT: I32 */
    const int32_t *g_idx;            /* PACKED_INT/INT8 GROUP only: group of each column, or NULL */
    uint32_t bits;                   /* PACKED_INT: 1..8 */
};

/*! qtl_dequant_scheme_name() : "fp8", "int8", "nvfp4-ct", ... or NULL. */
QTL_API const char *qtl_dequant_scheme_name(enum qtl_scheme scheme);
/*! qtl_dequant_check() : validate a descriptor (shapes, dtypes, g_idx range)
 *  and report the byte sizes its tensors must have. Any NULL out pointer is
 *  skipped. On failure `msg` (if not NULL) receives the reason. */
QTL_API int qtl_dequant_check(const struct qtl_dequant_desc *d, uint64_t *weight_bytes, uint64_t *scale_bytes,
                              uint64_t *zero_point_bytes, char *msg, size_t msg_cap);
/*! qtl_dequant() : rows [row0, row0 + nrows) of the weight into dst (F32 or
 *  BF16, row-major, dst_size = nrows * cols * 4 or 2). n_threads <= 1 runs on
 *  the calling thread. The descriptor is validated first (qtl_dequant_check).
 *  `fast` = 0 forces the portable reference kernels. */
QTL_API int qtl_dequant(const struct qtl_dequant_desc *d, uint64_t row0, uint64_t nrows, enum qtl_dtype out,
                        void *dst, size_t dst_size, int n_threads, int fast, char *msg, size_t msg_cap);
/*! qtl_dequant_fast_name() : the fast path this CPU selected ("avx2", "none"). */
QTL_API const char *qtl_dequant_fast_name(void);

/* ---- byte sources -------------------------------------------------------- */
/* A pread-like source: read exactly `len` bytes at `offset` into `dst`.
 * @return 0, or a negative status (QTL_ERR_IO for a short read). The parser
 * never asks for bytes past `size`. */
struct qtl_source {
    int (*read)(void *ud, void *dst, size_t len, uint64_t offset);
    void *ud;
    uint64_t size;
};

/* ---- options ------------------------------------------------------------ */
#define QTL_DEFAULT_MAX_HEADER 100000000u
struct qtl_open_options {
    const struct qtl_allocator *allocator; /* NULL: malloc/free */
    uint64_t max_header_bytes;             /* 0: QTL_DEFAULT_MAX_HEADER */
};

/* ---- tensor description ------------------------------------------------- */
/* Filled by qtl_st_tensor_at() / qtl_ckpt_tensor_at(). Pointers are owned by
 * the handle they came from. */
struct qtl_tensor_info {
    const char *name;
    const char *file;      /* the file's name as opened (shard path for checkpoints) */
    enum qtl_dtype dtype;
    uint32_t ndim;
    const uint64_t *shape; /* ndim entries; NULL when ndim == 0 */
    uint64_t numel;        /* product of shape; 1 for rank 0 */
    uint64_t nbytes;       /* end - begin */
    uint64_t begin, end;   /* data_offsets, relative to the data buffer */
    uint64_t file_offset;  /* absolute offset of the first byte in the file */
};

/* A byte range relative to the first byte of a tensor. */
struct qtl_byte_range {
    uint64_t offset;
    uint64_t length;
};

/* ---- one safetensors file ------------------------------------------------ */
typedef struct qtl_st qtl_st_t;

/*! qtl_st_open_file() : open and validate `path` (read with pread; no mmap).
 *  The whole header is validated before the call returns; no tensor data is read.
 *  @return QTL_OK, or a status with the message in qtl_st_errmsg(*out). */
QTL_API int qtl_st_open_file(const char *path, const struct qtl_open_options *opts, qtl_st_t **out);
/*! qtl_st_open_memory() : same over caller-owned bytes, which must stay valid
 *  until qtl_st_close(). `name` (may be NULL) is used in messages. */
QTL_API int qtl_st_open_memory(const void *data, size_t size, const char *name,
                               const struct qtl_open_options *opts, qtl_st_t **out);
/*! qtl_st_open_source() : same over any byte source (copied; `src->ud` must stay
 *  valid until close). */
QTL_API int qtl_st_open_source(const struct qtl_source *src, const char *name,
                               const struct qtl_open_options *opts, qtl_st_t **out);
/*! qtl_st_close() : release everything; NULL is a no-op. */
QTL_API void qtl_st_close(qtl_st_t *st);
/*! qtl_st_errmsg() : @return the message of the last failure ("" if none). */
QTL_API const char *qtl_st_errmsg(const qtl_st_t *st);
/*! qtl_st_errcode() : @return the status of the last failure (QTL_OK if none). */
QTL_API int qtl_st_errcode(const qtl_st_t *st);
/*! qtl_st_name() : @return the name given at open (the path for files). */
QTL_API const char *qtl_st_name(const qtl_st_t *st);
QTL_API uint64_t qtl_st_file_size(const qtl_st_t *st);
/*! qtl_st_header_size() : @return N, the JSON header length (with padding). */
QTL_API uint64_t qtl_st_header_size(const qtl_st_t *st);

/*! qtl_st_tensor_count() : number of tensors; indices are in data_offsets order. */
QTL_API size_t qtl_st_tensor_count(const qtl_st_t *st);
QTL_API int qtl_st_tensor_at(const qtl_st_t *st, size_t index, struct qtl_tensor_info *info);
/*! qtl_st_tensor_find() : @return QTL_OK and *index, or QTL_ERR_NOT_FOUND. O(1). */
QTL_API int qtl_st_tensor_find(const qtl_st_t *st, const char *name, size_t *index);

/* `__metadata__`, keys in the order of the file. */
QTL_API size_t qtl_st_metadata_count(const qtl_st_t *st);
QTL_API int qtl_st_metadata_at(const qtl_st_t *st, size_t index, const char **key, const char **value);
/*! qtl_st_metadata_get() : @return the value for `key`, or NULL. */
QTL_API const char *qtl_st_metadata_get(const qtl_st_t *st, const char *key);

/*! qtl_st_read() : read `n` byte ranges of tensor `index`, concatenated into
 *  `dst` (dst_size must equal the sum of the lengths). Ranges outside the
 *  tensor are QTL_ERR_RANGE. This is the one read path; the helpers below
 *  build ranges and call it. */
QTL_API int qtl_st_read(qtl_st_t *st, size_t index, const struct qtl_byte_range *ranges, size_t n,
                        void *dst, size_t dst_size);
/*! qtl_st_read_tensor() : the whole tensor; dst_size must equal nbytes. */
QTL_API int qtl_st_read_tensor(qtl_st_t *st, size_t index, void *dst, size_t dst_size);
/*! qtl_st_read_block() : view the tensor as 2-D [shape[0], prod(shape[1:])]
 *  (rank 1 is [d0, 1], rank 0 is [1, 1]) and read rows [row0, row0+nrows) x columns [col0, col0+ncols), row-major
 *  into dst. Sub-byte dtypes need byte-aligned column bounds. A full-width
 *  block is a row range and is read in one piece. */
QTL_API int qtl_st_read_block(qtl_st_t *st, size_t index, uint64_t row0, uint64_t nrows, uint64_t col0,
                              uint64_t ncols, void *dst, size_t dst_size);

/* ---- safetensors writer ---------------------------------------------------- */
/* Matches the reference writer: tensors ordered by dtype in descending
 * declaration order (largest alignment first), then by name; compact JSON,
 * `__metadata__` first (keys sorted), header right-padded with spaces to a
 * multiple of 8. The writer keeps pointers to tensor data and shapes until
 * it is freed: they must stay valid until the last write call. */
typedef struct qtl_st_writer qtl_st_writer_t;

/* A sink receives the bytes in order. @return 0 or a negative status. */
struct qtl_sink {
    int (*write)(void *ud, const void *src, size_t len);
    void *ud;
};

QTL_API int qtl_st_writer_new(const struct qtl_allocator *allocator, qtl_st_writer_t **out);
QTL_API void qtl_st_writer_free(qtl_st_writer_t *w);
QTL_API const char *qtl_st_writer_errmsg(const qtl_st_writer_t *w);
/*! qtl_st_writer_errcode() : @return the status of the last failure (QTL_OK if none). */
QTL_API int qtl_st_writer_errcode(const qtl_st_writer_t *w);
/*! qtl_st_writer_add() : `nbytes` must equal the size implied by dtype and shape
 *  (QTL_ERR_TENSOR_INVALID_INFO / QTL_ERR_MISALIGNED_SLICE otherwise, as the
 *  crate's TensorView::new); a repeated name is QTL_ERR_DUPLICATE_KEY. */
QTL_API int qtl_st_writer_add(qtl_st_writer_t *w, const char *name, enum qtl_dtype dtype, uint32_t ndim,
                              const uint64_t *shape, const void *data, uint64_t nbytes);
/* Produces a tensor's nbytes bytes into dst at write time. @return 0 or a status. */
typedef int (*qtl_fill_fn)(void *ud, void *dst, uint64_t nbytes);
/*! qtl_st_writer_add_fill() : like qtl_st_writer_add, but the data is produced
 *  by `fill` when the file is written, one tensor in memory at a time (for
 *  files larger than memory). `ud` must stay valid until the last write. */
QTL_API int qtl_st_writer_add_fill(qtl_st_writer_t *w, const char *name, enum qtl_dtype dtype, uint32_t ndim,
                                   const uint64_t *shape, uint64_t nbytes, qtl_fill_fn fill, void *ud);
QTL_API int qtl_st_writer_set_metadata(qtl_st_writer_t *w, const char *key, const char *value);
/*! qtl_st_writer_header_size() : @return N of the file that would be written now. */
QTL_API int qtl_st_writer_header_size(qtl_st_writer_t *w, uint64_t *n);
QTL_API int qtl_st_writer_write(qtl_st_writer_t *w, const struct qtl_sink *sink);
/*! qtl_st_writer_write_file() : write to `path` (via a temporary file renamed
 *  into place, so a crash never leaves a half-written file under that name). */
QTL_API int qtl_st_writer_write_file(qtl_st_writer_t *w, const char *path);

/* ---- checkpoints (a directory of shards) ---------------------------------- */
typedef struct qtl_ckpt qtl_ckpt_t;

/* A finding about a checkpoint (warnings and errors found by qtl_ckpt_check). */
struct qtl_diag {
    enum qtl_severity severity;
    int code;           /* a qtl_status; QTL_OK for pure warnings */
    const char *id;     /* stable identifier from QTL_FINDING_MAP, e.g. "tensor-not-in-index" */
    const char *file;   /* may be NULL */
    const char *tensor; /* may be NULL */
    const char *message;
};

/*! qtl_ckpt_open() : `path` is a directory (its model.safetensors.index.json,
 *  else every *.safetensors file in it, as vLLM does), an index.json file, or
 *  one .safetensors file. Reads the index only; each shard is opened lazily,
 *  once, when a tensor in it is first needed. */
QTL_API int qtl_ckpt_open(const char *path, const struct qtl_open_options *opts, qtl_ckpt_t **out);
QTL_API void qtl_ckpt_close(qtl_ckpt_t *ck);
QTL_API const char *qtl_ckpt_errmsg(const qtl_ckpt_t *ck);
/*! qtl_ckpt_errcode() : @return the status of the last failure (QTL_OK if none). */
QTL_API int qtl_ckpt_errcode(const qtl_ckpt_t *ck);
/*! qtl_ckpt_dir() : @return the directory the shards are in. */
QTL_API const char *qtl_ckpt_dir(const qtl_ckpt_t *ck);
/*! qtl_ckpt_index_path() : @return the index.json path, or NULL without one. */
QTL_API const char *qtl_ckpt_index_path(const qtl_ckpt_t *ck);
QTL_API size_t qtl_ckpt_shard_count(const qtl_ckpt_t *ck);
/*! qtl_ckpt_shard_name() : file name of shard i, relative to qtl_ckpt_dir(). */
QTL_API const char *qtl_ckpt_shard_name(const qtl_ckpt_t *ck, size_t i);
/*! qtl_ckpt_shard() : open (once) and return shard i; owned by the checkpoint. */
QTL_API int qtl_ckpt_shard(qtl_ckpt_t *ck, size_t i, qtl_st_t **st);
/*! qtl_ckpt_check() : open every shard and check the index against them:
 *  index entries whose file or tensor is missing are errors, a tensor held by
 *  two shards is an error, a tensor present in a shard but absent from the
 *  index is a warning (vLLM loads it) and is added to the tensor table.
 *  Every finding is recorded (qtl_ckpt_diag_*); the first error is returned. */
QTL_API int qtl_ckpt_check(qtl_ckpt_t *ck);
QTL_API size_t qtl_ckpt_diag_count(const qtl_ckpt_t *ck);
QTL_API int qtl_ckpt_diag_at(const qtl_ckpt_t *ck, size_t i, struct qtl_diag *d);

/*! qtl_ckpt_tensor_count() : tensors known so far: every index entry, plus the
 *  tensors of shards opened so far that the index does not list. Without an
 *  index every shard is opened by qtl_ckpt_open. */
QTL_API size_t qtl_ckpt_tensor_count(const qtl_ckpt_t *ck);
/*! qtl_ckpt_tensor_at() : describe tensor i, opening its shard if needed. */
QTL_API int qtl_ckpt_tensor_at(qtl_ckpt_t *ck, size_t i, struct qtl_tensor_info *info);
QTL_API int qtl_ckpt_tensor_find(const qtl_ckpt_t *ck, const char *name, size_t *i);
/*! qtl_ckpt_tensor_name() : the name of tensor i (from the index; no shard is opened). */
QTL_API int qtl_ckpt_tensor_name(const qtl_ckpt_t *ck, size_t i, char *buf, size_t cap);
/*! qtl_ckpt_tensor_shard() : shard index of tensor i. */
QTL_API int qtl_ckpt_tensor_shard(const qtl_ckpt_t *ck, size_t i, size_t *shard);
/* Reads, as the qtl_st_read* functions, on checkpoint tensor i. */
QTL_API int qtl_ckpt_read(qtl_ckpt_t *ck, size_t i, const struct qtl_byte_range *ranges, size_t n, void *dst,
                          size_t dst_size);
QTL_API int qtl_ckpt_read_tensor(qtl_ckpt_t *ck, size_t i, void *dst, size_t dst_size);
QTL_API int qtl_ckpt_read_block(qtl_ckpt_t *ck, size_t i, uint64_t row0, uint64_t nrows, uint64_t col0,
                                uint64_t ncols, void *dst, size_t dst_size);

/* ---- model configuration (src/load/config.c) ---------------------------------
 * config.json gives the model shape; quantization_config (or, for ModelOpt,
 * hf_quant_config.json) gives each linear layer's scheme, resolved the way
 * vLLM resolves it: ignore lists first (compressed-tensors: exact names and
 * "re:" patterns, anchored like Python's re.match; fp8: ignored_layers /
 * modules_to_not_convert; ModelOpt: exclude_modules with fnmatch wildcards),
 * then compressed-tensors targets (exact names, then "re:" patterns, then the
 * class name "Linear"). A fused layer (qkv_proj from q/k/v_proj) is resolved
 * from its parts, which must agree. lm_head is a ParallelLMHead in vLLM, not a
 * linear layer: it always resolves to unquantized. */
enum qtl_arch {
    QTL_ARCH_LLAMA = 0,
    QTL_ARCH_MISTRAL = 1,
    QTL_ARCH_QWEN2 = 2,
    QTL_ARCH_QWEN3 = 3,
    QTL_ARCH_PHI3 = 4,
    QTL_ARCH_MIXTRAL = 5,  /* MixtralForCausalLM: every layer MoE, experts w1/w2/w3 */
    QTL_ARCH_QWEN3_MOE = 6 /* Qwen3MoeForCausalLM: gate/up/down experts, dense mlp_only_layers */
};
enum qtl_quant_method { QTL_QM_NONE = 0, QTL_QM_FP8 = 1, QTL_QM_CT = 2, QTL_QM_MODELOPT = 3 };
/* vLLM's per-layer schemes (vllm-loading.md §5.0). */
enum qtl_layer_scheme {
    QTL_LS_UNQUANTIZED = 0,
    QTL_LS_FP8_TENSOR = 1,      /* quant_method fp8, per-tensor */
    QTL_LS_FP8_BLOCK = 2,       /* quant_method fp8 + weight_block_size */
    QTL_LS_CT_FP8_TENSOR = 3,   /* compressed-tensors W8A8 FP8 (or FP8 weight-only) */
    QTL_LS_CT_FP8_CHANNEL = 4,
    QTL_LS_CT_FP8_BLOCK = 5,
    QTL_LS_CT_INT8_TENSOR = 6,  /* W8A8 INT8 */
    QTL_LS_CT_INT8_CHANNEL = 7,
    QTL_LS_CT_NVFP4 = 8,        /* W4A4 NVFP4 */
    QTL_LS_CT_NVFP4_A16 = 9,
    QTL_LS_CT_WNA16 = 10,       /* pack-quantized int4/int8 weight-only */
    QTL_LS_MODELOPT_FP8 = 11,
    QTL_LS_MODELOPT_NVFP4 = 12,
    QTL_LS_MODELOPT_W4A16_NVFP4 = 13,
    QTL_LS_COUNT = 14
};
struct qtl_model_shape {
    enum qtl_arch arch;
    uint32_t hidden, heads, kv_heads, head_dim, intermediate, layers, vocab;
    int tie_word_embeddings, qkv_bias, qk_norm;
    enum qtl_dtype params_dtype; /* torch_dtype bfloat16/float16; float32 or missing: BF16 */
    /* mixture of experts (0 experts: dense): num_local_experts / num_experts, the experts' I
     * (Mixtral: intermediate_size; Qwen3-MoE: moe_intermediate_size), num_experts_per_tok,
     * decoder_sparse_step; which layers are MoE: qtl_config_layer_is_moe */
    uint32_t experts, moe_intermediate, experts_per_tok, sparse_step;
};
struct qtl_layer_quant {
    enum qtl_layer_scheme scheme;
    uint32_t bits;         /* weight bits */
    uint32_t group_size;   /* NVFP4: 16; WNA16: group (0 = channel) */
    uint32_t block[2];     /* block FP8 */
    int symmetric;         /* weights; 0: zero points stored */
    int actorder;          /* weight_g_idx stored */
    int static_input;      /* an input scale (or NVFP4 input global scale) is stored */
    int input_symmetric;   /* INT8 static input; 0: input_zero_point stored */
};
typedef struct qtl_config qtl_config_t;
/*! qtl_config_open() : read DIR/config.json (and DIR/hf_quant_config.json).
 *  dtype_override: QTL_DTYPE_BF16 / F16 to force params_dtype, anything else
 *  (e.g. QTL_DTYPE_COUNT) to follow torch_dtype. Messages name the file and
 *  the key; an unknown architecture lists the supported ones. */
QTL_API int qtl_config_open(const char *dir, const struct qtl_open_options *opts, enum qtl_dtype dtype_override,
                            qtl_config_t **out);
QTL_API void qtl_config_close(qtl_config_t *c);
QTL_API const char *qtl_config_errmsg(const qtl_config_t *c);
/*! qtl_config_errcode() : @return the status of the last failure (QTL_OK if none). */
QTL_API int qtl_config_errcode(const qtl_config_t *c);
QTL_API const struct qtl_model_shape *qtl_config_shape(const qtl_config_t *c);
QTL_API enum qtl_quant_method qtl_config_method(const qtl_config_t *c);
/*! qtl_config_layer_quant() : the scheme of the linear layer `prefix` (vLLM's
 *  module name, e.g. "model.layers.0.self_attn.qkv_proj"). For a layer fused by
 *  vLLM from checkpoint modules, pass their names in `parts` (they must agree:
 *  QTL_ERR_UNSUPPORTED otherwise); nparts = 0 resolves `prefix` itself. */
QTL_API int qtl_config_layer_quant(qtl_config_t *c, const char *prefix, const char *const *parts, size_t nparts,
                                   struct qtl_layer_quant *out);
QTL_API const char *qtl_layer_scheme_name(enum qtl_layer_scheme s);
/*! qtl_config_layer_is_moe() : decoder layer `layer` has routed experts (Qwen3-MoE: not in
 *  mlp_only_layers and (layer + 1) % decoder_sparse_step == 0; Mixtral: every layer). */
QTL_API int qtl_config_layer_is_moe(const qtl_config_t *c, uint32_t layer);
QTL_API const char *qtl_arch_name(enum qtl_arch a);

/* ---- loading: plan, then execute (src/load/: model.c, plan.c, load.c; src/exec/exec.c)
 * qtl_load_open builds the rank's PLAN from the shard headers, config and
 * layout, reading no tensor data: every parameter vLLM creates (vLLM's names,
 * dtypes, per-rank shapes; qkv_proj / gate_up_proj fused; per-tensor scales as
 * F32 [L], one slot per logical sub-matrix; F32_MIN where vLLM pre-fills) and
 * every copy vLLM's weight_loader calls make, as ops (qtl_load_op_at). Shapes,
 * dtypes, coverage and vLLM's last-write-wins order are resolved on the plan,
 * so these findings exist before the first byte is read:
 *   tensor.unmapped       a checkpoint tensor no parameter takes
 *   tensor.shape          shapes that do not fit the parameter and tp
 *   tensor.dtype          a dtype the parameter cannot take
 *   tensor.shard          a shard id or slot the parameter does not have
 *   scale.vector          a per-tensor scale stored as a [n > 1] vector
 *   param.unwritten       parameter rows never written
 *   scale.unwritten       scale rows / slots never written (vLLM keeps F32_MIN or garbage)
 *   param.double-write    rows written twice
 *   consequence (info)    rows left unwritten by a tensor that failed above
 * qtl_load_run EXECUTES the plan (sorted, coalesced, cut into 8 MiB pieces over
 * `threads` workers; strided row-parallel reads per row or sieved) into one
 * 2 MiB-aligned arena, the caller's buffer (qtl_load_set_buffer) or the
 * caller's per-parameter memory (qtl_load_bind), then checks what arrived:
 *   tensor.read           a read failed (file, tensor, offset, reason)
 *   file.changed          a file's size differs from the plan's
 *   param.overwrite-differs (warning) a whole-overwrite parameter (INT8 input_scale,
 *                         g_idx) got different values; vLLM keeps the last
 *   scale.nan / scale.inf / scale.nonpositive   bad scale values
 * plus the checkpoint's own findings (shard-missing, tensor-missing, ...).
 * `allow` downgrades the listed IDs to warnings.
 * Threads: a handle is used by one thread at a time; qtl_load_run uses
 * `threads` workers inside. Pointers returned by the accessors stay valid until
 * qtl_load_close, except that qtl_load_process renames, replaces and drops
 * parameters (re-read them with qtl_load_param_at afterwards). */
enum qtl_read_level {
    QTL_READ_ALL = 0,         /* every parameter */
    QTL_READ_SCALES = 1,      /* per-tensor, global, channel and input scales and small parameters */
    QTL_READ_SCALES_DEEP = 2, /* every scale, group and block scales included */
    QTL_READ_NONE = 3         /* the plan only: qtl_load_run reads nothing */
};
struct qtl_load_options {
    uint32_t tp, rank;
    enum qtl_dtype dtype_override;     /* BF16 / F16, or QTL_DTYPE_COUNT to follow torch_dtype */
    const char *const *allow;          /* finding IDs downgraded to warnings */
    size_t nallow;
    const struct qtl_allocator *allocator; /* every allocation but the parameter arena (mmap) */
    /* Called while planning, after each checkpoint tensor, with the tensors done and total (may be NULL). */
    void (*progress)(void *ud, size_t done, size_t total);
    void *progress_ud;
    /* enum qtl_read_level: unread parameters have data == NULL (their ops are planned and checked). */
    int verify;
    unsigned threads; /* executor workers; 0: the number of cores */
    int direct;       /* O_DIRECT reads (aligned supersets); buffered where the file system refuses */
    /* Called during qtl_load_run with bytes done and total (may be NULL; from one thread at a time). */
    void (*progress_bytes)(void *ud, uint64_t done, uint64_t total);
    /* Pipeline parallelism (vLLM's --pipeline-parallel-size): `pp` stages (0 or 1: none) and
     * this rank's stage `pp_rank`; `rank` stays the tensor-parallel rank and vLLM's global rank
     * is pp_rank * tp + rank. The stage holds the decoder layers qtl_pp_layers gives it, the
     * embedding on the first stage (and on the last when the embeddings are tied), the final
     * norm and lm_head on the last; tensors of other stages are skipped as vLLM's
     * PPMissingLayer skips them. `pp_partition`: VLLM_PP_LAYER_PARTITION ("10,12,10"), NULL
     * for vLLM's default split. */
    uint32_t pp, pp_rank;
    const char *pp_partition;
    /* Expert parallelism (vLLM's --enable-expert-parallel) for MoE models: the tp ranks split
     * the experts (linear placement, the first E % tp ranks one more) and hold whole experts;
     * attention stays tensor-parallel. 0: every rank holds I/tp of every expert. */
    int ep;
};
/*! qtl_shard_file_name() : the file of one rank of a pre-sharded directory, as vLLM's
 *  sharded_state loader names them: DIR/model-rank-{tp_rank}-part-{part}.safetensors, or
 *  DIR/model-pp-{pp_rank}-tp-{tp_rank}-part-{part}.safetensors when pp > 1 (dir NULL: the
 *  bare name). */
QTL_API void qtl_shard_file_name(char *buf, size_t cap, const char *dir, uint32_t tp_rank, uint32_t pp_rank,
                                 uint32_t pp, uint32_t part);
/*! qtl_pp_layers() : vLLM 0.32's get_pp_indices (vllm/distributed/utils.py): stage pp_rank
 *  of pp holds decoder layers [*start, *end). Without a partition the layers are split
 *  evenly and the remainder goes one each to the stages before the last, from the
 *  second-to-last backwards (32 layers on 3 stages: 11, 11, 10). `partition` is
 *  VLLM_PP_LAYER_PARTITION: pp comma-separated counts summing to `layers` (qtl also refuses
 *  negative counts, which vLLM's int() accepts). @return QTL_OK, or QTL_ERR_INVALID_ARGUMENT
 *  with the reason in msg (vLLM's ValueError text). */
QTL_API int qtl_pp_layers(uint32_t layers, uint32_t pp, uint32_t pp_rank, const char *partition, uint32_t *start,
                          uint32_t *end, char *msg, size_t msg_cap);
struct qtl_param_info {
    const char *name; /* vLLM's parameter name */
    const char *kind; /* vLLM's parameter class */
    enum qtl_dtype dtype;
    uint32_t ndim;
    const uint64_t *shape;
    const void *data; /* NULL before qtl_load_run and when not read; owned by the handle or the binder */
    uint64_t nbytes;
};
/* One planned copy: `rows` rows of `row_bytes` bytes from `src_offset` in the
 * file, `src_pitch` apart, to byte `dst_offset` of the parameter, `dst_pitch`
 * apart; converted when the dtypes differ (torch's copy_). A superseded op is
 * a whole-overwrite write a later op replaces (vLLM's last write wins): it is
 * read only to compare values. */
struct qtl_copy_op {
    const char *tensor; /* the checkpoint's name */
    size_t file;        /* qtl_load_file_at index */
    size_t param;       /* qtl_load_param_at index */
    uint64_t src_offset, rows, row_bytes, src_pitch;
    uint64_t dst_offset, dst_pitch;
    int32_t slot;    /* per-tensor scale slot, -1 otherwise */
    uint32_t expert; /* UINT32_MAX for dense layers */
    enum qtl_dtype src_dtype, dst_dtype;
    int superseded;
};
typedef struct qtl_load qtl_load_t;
/*! qtl_load_open() : open the checkpoint at `path` and its config and build
 *  the rank's plan (no tensor data read). A failure to lay out the model at
 *  this tp is an error return (qtl_load_fail_id names it); plan findings are
 *  listed, not returned. On error *out is still set: read the message, then close. */
QTL_API int qtl_load_open(const char *path, const struct qtl_load_options *o, qtl_load_t **out);
/*! qtl_load_run() : execute the plan and check the values read. @return QTL_OK
 *  or the status of the first error-level finding (every finding is listed by
 *  qtl_load_finding_at); QTL_ERR_NOMEM when memory ran out. Once per handle. */
QTL_API int qtl_load_run(qtl_load_t *l);
/*! qtl_load_bytes_needed() : bytes of parameter memory qtl_load_run needs at
 *  this read level (the arena's size, or what qtl_load_set_buffer must give). */
QTL_API uint64_t qtl_load_bytes_needed(qtl_load_t *l);
/*! qtl_load_set_buffer() : parameters go into [base, base+size) (the caller's:
 *  pinned host memory, an arena reused across loads) instead of a fresh arena.
 *  Before qtl_load_run; size >= qtl_load_bytes_needed. Not zeroed by qtl
 *  beyond what the plan writes (every written unit, vocab padding, pre-fills). */
QTL_API int qtl_load_set_buffer(qtl_load_t *l, void *base, size_t size);
/*! qtl_load_bind() : parameter i's bytes go to dst (nbytes must be its size),
 *  e.g. a tensor a framework allocated. Before qtl_load_run; dst stays the caller's. */
QTL_API int qtl_load_bind(qtl_load_t *l, size_t i, void *dst, uint64_t nbytes);
/*! qtl_load_process() : stage "processed" (docs/processed.md): each scheme's
 *  post-processing as vLLM's process_weights_after_loading, without kernel
 *  layout changes (weights stay [N, K]). Refused after error-level findings
 *  and for loads that did not read everything. */
QTL_API int qtl_load_process(qtl_load_t *l);
/*! qtl_fp8_requantize() : vLLM's requantize_with_max_scale on one sub-matrix
 *  of E4M3 codes: fp16(fp16(q) * fp16(s_i)) then E4M3 RNE of that * (1/s_max),
 *  saturated (the CUDA path). */
QTL_API void qtl_fp8_requantize(uint8_t *w, uint64_t rows, uint64_t cols, float s_i, float s_max);
/*! qtl_load_write() : write the rank's parameters to `path` (one safetensors
 *  file; metadata qtl.tp, qtl.rank, qtl.stage, qtl.source, and qtl.pp, qtl.pp_rank with
 *  pipeline stages). A directory of
 *  such files, model-rank-{r}-part-0.safetensors, plus config.json, is a
 *  pre-sharded checkpoint: qtl_load_open reads it back (same tp only), and a
 *  processed one is never post-processed again. Missing parent directories
 *  of `path` are created. */
QTL_API int qtl_load_write(qtl_load_t *l, const char *path, const char *source);
/*! qtl_load_write_vllm() : write the rank's files for vLLM's `--load-format sharded_state`
 *  into `dir` (vLLM's names, qtl_shard_file_name): exactly the key set of vLLM 0.32's freshly
 *  created model's state_dict() for this rank — the stage-loaded parameters (tied embeddings
 *  under lm_head.weight only; zero-element tensors dropped), every attention layer's F32 0-D
 *  buffers _k_scale/_v_scale/_q_scale/_prob_scale = 1.0, and the KV-cache placeholders of the
 *  quantization family (fp8 and ModelOpt: q/k/v/prob_scale 0-D -1.0 in the model dtype;
 *  compressed-tensors: k/v/q_scale F32 [1] 1.0 and k/v/q_zero_point [1] 0), or the
 *  checkpoint's KV scales under vLLM's names in those dtypes and shapes. A new part starts
 *  before a tensor that would take the current one past max_file_size bytes (0: one part);
 *  *nparts gets the count. Metadata: qtl.for=vllm, qtl.vllm (the modelled version), tp, rank,
 *  pp, pp_rank, stage, dtype, quantization, source, part/parts, kv_scales. Needs a run at read
 *  level QTL_READ_ALL, not processed (vLLM post-processes what it reads): else
 *  QTL_ERR_INVALID_ARGUMENT. qtl_load_open reads such a directory back. */
QTL_API int qtl_load_write_vllm(qtl_load_t *l, const char *dir, const char *source, uint64_t max_file_size,
                                size_t *nparts);
QTL_API void qtl_load_close(qtl_load_t *l);
QTL_API const char *qtl_load_errmsg(const qtl_load_t *l);
/*! qtl_load_errcode() : @return the status of the last failure (QTL_OK if none; a run
 *  stopped by an error-level finding returns that finding's code, QTL_ERR_CHECKPOINT
 *  for the loading rules, without setting the handle's message: read the findings). */
QTL_API int qtl_load_errcode(const qtl_load_t *l);
/*! qtl_load_fail_id() : when qtl_load_open failed because the model cannot be
 *  laid out at this tp, the finding ID (tp.heads, tp.kv-heads, tp.intermediate,
 *  tp.vocab, tp.block, tp.group, tp.nvfp4, tp.pack), or config.unsupported when
 *  vLLM 0.32 refuses a layer's scheme; NULL otherwise. */
QTL_API const char *qtl_load_fail_id(const qtl_load_t *l);
QTL_API size_t qtl_load_param_count(const qtl_load_t *l);
QTL_API int qtl_load_param_at(const qtl_load_t *l, size_t i, struct qtl_param_info *pi);
QTL_API size_t qtl_load_finding_count(const qtl_load_t *l);
QTL_API int qtl_load_finding_at(const qtl_load_t *l, size_t i, struct qtl_diag *d);
/* One vLLM linear layer of the rank (qkv_proj, o_proj, gate_up_proj, down_proj of each
 * decoder layer): its name, the scheme the config gives it, and the checkpoint modules it
 * loads from (q/k/v or gate/up when split on disk; the layer itself when fused on disk). */
struct qtl_layer_info {
    const char *prefix; /* vLLM's module name, e.g. model.layers.0.self_attn.qkv_proj */
    struct qtl_layer_quant quant;
    size_t nmodules;
    const char *modules[3];
};
QTL_API size_t qtl_load_layer_count(const qtl_load_t *l);
QTL_API int qtl_load_layer_at(const qtl_load_t *l, size_t i, struct qtl_layer_info *out);
/* The plan. */
QTL_API size_t qtl_load_op_count(const qtl_load_t *l);
QTL_API int qtl_load_op_at(const qtl_load_t *l, size_t i, struct qtl_copy_op *op);
QTL_API size_t qtl_load_file_count(const qtl_load_t *l);
/*! qtl_load_file_at() : the path of file i and its size when planned. */
QTL_API const char *qtl_load_file_at(const qtl_load_t *l, size_t i, uint64_t *size);
/*! qtl_load_plan_hash() : 64-bit FNV-1a over the files (names, sizes), the
 *  tensor table, the model and layer schemes from the config, and the layout
 *  (tp) — not the rank: every rank of one load must agree (MPI compares it). */
QTL_API uint64_t qtl_load_plan_hash(const qtl_load_t *l);
/*! qtl_load_bytes_to_read() : source bytes the ops of read parameters ask for. */
QTL_API uint64_t qtl_load_bytes_to_read(const qtl_load_t *l);
/*! qtl_load_bytes_read() : bytes qtl_load_run read from files (sieved
 *  row-parallel reads and coalesced gaps included). */
QTL_API uint64_t qtl_load_bytes_read(const qtl_load_t *l);
/*! qtl_load_seconds() : wall time of qtl_load_run (memory, reads, value checks);
 *  qtl_load_process_seconds() : of qtl_load_process (0 when not run). */
QTL_API double qtl_load_seconds(const qtl_load_t *l);
QTL_API double qtl_load_process_seconds(const qtl_load_t *l);

/* ---- one process per rank: MPI (src/dist, libqtl_mpi) ------------------------------
 * Built when MPICH is found (-DQTL_MPI=ON/AUTO; pkg-config qtl lists it). Each process
 * plans and reads only its own rank with the local executor; MPI carries statuses, plan
 * hashes and reports, never tensor data. No MPI type appears here: the handle works on a
 * duplicate of MPI_COMM_WORLD, so qtl's collectives never mix with the host's. Every
 * function below is collective (all ranks call it, in the same order) unless stated. */
typedef struct qtl_dist qtl_dist_t;
/*! qtl_dist_open() : MPI_Init_thread(FUNNELED) unless the host already initialized MPI
 *  (then qtl_dist_close leaves MPI running). @return QTL_OK, QTL_ERR_IO, QTL_ERR_NOMEM. */
QTL_API int qtl_dist_open(int *argc, char ***argv, const struct qtl_allocator *allocator, qtl_dist_t **out);
QTL_API uint32_t qtl_dist_rank(const qtl_dist_t *d); /* not collective */
QTL_API uint32_t qtl_dist_size(const qtl_dist_t *d); /* not collective */
/*! qtl_dist_agree() : every rank's `local` status of a phase (0: ok); on every rank
 *  *worst = the largest value and *nfailed = how many ranks were not 0. */
QTL_API int qtl_dist_agree(qtl_dist_t *d, int local, int *worst, uint32_t *nfailed);
/*! qtl_dist_check_plan() : MPI_Allreduce of the plan hash (min and max): QTL_OK on every
 *  rank when all agree; else QTL_ERR_CHECKPOINT on every rank and, on rank 0, `msg` names
 *  the ranks whose hash differs from rank 0's and the files whose names or sizes differ. */
QTL_API int qtl_dist_check_plan(qtl_dist_t *d, const qtl_load_t *l, char *msg, size_t msg_cap);
/*! qtl_dist_gather() : rank 0 receives every rank's `len` bytes, concatenated in rank order
 *  and NUL-terminated, in *all, with (*offsets)[r] .. [r + 1] rank r's part (size + 1
 *  entries); other ranks get NULL. MPI-4 large-count calls carry parts of 2 GiB and more.
 *  Free both with qtl_dist_free. */
QTL_API int qtl_dist_gather(qtl_dist_t *d, const void *mine, uint64_t len, void **all, uint64_t **offsets);
QTL_API void qtl_dist_free(qtl_dist_t *d, void *p); /* not collective */
QTL_API int qtl_dist_barrier(qtl_dist_t *d);
/*! qtl_dist_abort() : MPI_Abort — a last resort, when a rank cannot take part in a collective. */
QTL_API void qtl_dist_abort(qtl_dist_t *d, int code);
/*! qtl_dist_close() : frees the handle (collective: MPI_Comm_free, MPI_Finalize if qtl initialized MPI). */
QTL_API void qtl_dist_close(qtl_dist_t *d);

/* ---- fixture generator (src/fixture/fixture.c) ---------------------------------
 * Small checkpoints laid out exactly as the exporters write them (config.json,
 * hf_quant_config.json for ModelOpt, shards + model.safetensors.index.json),
 * from deterministic float master weights: the same options give the same
 * bytes in every build. Llama stores q/k/v and gate/up separately, Phi-3 stores
 * qkv_proj and gate_up_proj fused with one scale set for the fused matrix.
 * Mixtral and Qwen3-MoE store attention as Llama does and their experts one
 * tensor set per expert and projection (block_sparse_moe.experts.E.w1|w2|w3,
 * mlp.experts.E.gate_proj|up_proj|down_proj), with a BF16 router (...gate.weight)
 * that the quantization config ignores; Qwen3-MoE can store them fused on disk
 * as transformers v5 does (mlp.experts.gate_up_proj [E, 2I, H], down_proj [E, H, I]).
 * These functions are in their own library, libqtl_fixture (link it before
 * libqtl; pkg-config qtl lists both). */
enum qtl_fixture_arch {
    QTL_FIXTURE_LLAMA = 0,
    QTL_FIXTURE_PHI3 = 1,
    QTL_FIXTURE_MIXTRAL = 2,  /* MixtralForCausalLM: every layer MoE, intermediate_size = the expert size */
    QTL_FIXTURE_QWEN3_MOE = 3 /* Qwen3MoeForCausalLM: q/k norms, mlp_only_layers, decoder_sparse_step */
};
enum qtl_scale_layout {
    QTL_SCALE_LAYOUT_DEFAULT = 0,  /* what the scheme's exporter does: shared for NVFP4, else per-part */
    QTL_SCALE_LAYOUT_PER_PART = 1, /* split on disk: per-tensor quantities per projection */
    QTL_SCALE_LAYOUT_SHARED = 2    /* split on disk: the fused matrix's values for q/k/v and gate/up */
};
struct qtl_fixture_options {
    enum qtl_fixture_arch arch;
    const char *scheme; /* qtl_fixture_scheme_name(i) */
    uint32_t layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, shards;
    uint64_t seed;
    enum qtl_scale_layout scale_layout; /* also w1/w3 (gate/up) of each expert */
    int progress; /* report progress on stderr when it is a terminal */
    /* A real-world failure to build in (qtl_fixture_break_name(i)); NULL: none. */
    const char *break_id;
    /* Every allocation of qtl_fixture_write / qtl_fixture_master; NULL: malloc/free. */
    const struct qtl_allocator *allocator;
    /* MoE: experts, top_k and moe_intermediate are read by mixtral and qwen3-moe only;
     * decoder_sparse_step > 1, mlp_only_layers and fused_experts are refused
     * (QTL_ERR_INVALID_ARGUMENT) with the other archs. */
    uint32_t experts;             /* num_local_experts / num_experts, 1..65536 */
    uint32_t top_k;               /* num_experts_per_tok, 1..experts */
    uint32_t moe_intermediate;    /* the expert size; 0: `intermediate` */
    uint32_t decoder_sparse_step; /* qwen3-moe: layer i is MoE iff (i + 1) % step == 0; 0: 1 */
    const uint32_t *mlp_only_layers; /* qwen3-moe: dense layers (a Qwen3MoeMLP of `intermediate`) */
    size_t n_mlp_only_layers;
    int fused_experts; /* qwen3-moe: experts fused on disk; bf16 and fp8-block (FineGrainedFP8) only */
};
/*! qtl_fixture_defaults() : layers 2, hidden 1024, heads 8, kv heads 2, head dim
 *  128, intermediate 2048, vocab 1024, 2 shards, seed 0, llama, bf16; for the
 *  MoE archs 4 experts, top-k 2, expert size = intermediate, sparse step 1. */
QTL_API void qtl_fixture_defaults(struct qtl_fixture_options *o);
/*! qtl_fixture_arch_name() : "llama", "phi3", "mixtral", "qwen3-moe" (the enum's
 *  order), NULL past the end. */
QTL_API const char *qtl_fixture_arch_name(size_t i);
/*! qtl_fixture_scheme_name() / _help() : the i-th scheme, NULL past the end. */
QTL_API const char *qtl_fixture_scheme_name(size_t i);
QTL_API const char *qtl_fixture_scheme_help(size_t i);
/*! qtl_fixture_break_name() / _help() : the i-th failure --break can build in. */
QTL_API const char *qtl_fixture_break_name(size_t i);
QTL_API const char *qtl_fixture_break_help(size_t i);
/*! qtl_fixture_write() : write the checkpoint into `dir` (created with its parents if needed).
 *  Tensors are produced while writing, one stored module in memory at a time. */
QTL_API int qtl_fixture_write(const struct qtl_fixture_options *o, const char *dir, char *msg, size_t msg_cap);
/*! qtl_fixture_master() : the float master weight of one logical projection
 *  ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
 *  "down_proj") of `layer`; n must be its rows * cols. In the MoE archs the
 *  gate/up/down parts are those of the dense (mlp_only) layers. */
QTL_API int qtl_fixture_master(const struct qtl_fixture_options *o, uint32_t layer, const char *part, float *dst,
                               uint64_t n);
/*! qtl_fixture_expert_master() : the float master weight of projection `proj` of
 *  expert `expert` of `layer` in a MoE arch: "w1" or "gate_proj" [I, H], "w3" or
 *  "up_proj" [I, H], "w2" or "down_proj" [H, I] (I = the expert size); n must be
 *  rows * cols. The same values whether the experts are split or fused on disk.
 *  @return QTL_OK or QTL_ERR_INVALID_ARGUMENT (dense arch, expert, name or n). */
QTL_API int qtl_fixture_expert_master(const struct qtl_fixture_options *o, uint32_t layer, uint32_t expert,
                                      const char *proj, float *dst, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif /* QTL_H */
