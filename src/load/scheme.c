/* The layer-scheme catalogue: for each vLLM linear scheme, the parameters its
 * create_weights makes (suffix, vLLM class, dtype, shape rule, pre-fill), the
 * tensor-parallel divisibility rule its create_weights asserts, and its
 * process_weights_after_loading step (vllm-loading.md §5, §7). One row per
 * scheme; model.c and postload.c index it instead of switching on schemes. */
#include "load_internal.h"

/* parameter rule: suffix, class, dtype (QTL_DTYPE_COUNT: the model's), shape, when, flags, class when unpartitioned */
#define PR(suffix, kind, dt, shape, when, flags) {suffix, kind, dt, shape, when, flags, kind}
#define PDT QTL_DTYPE_COUNT

static const struct scheme_traits traits[QTL_LS_COUNT] = {
    [QTL_LS_UNQUANTIZED] = {{PR("weight", PK_MODEL_WEIGHT, PDT, SH_NK, PW_ALWAYS, 0)}, TPC_NONE, NULL},
    [QTL_LS_FP8_TENSOR] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, SH_NK, PW_ALWAYS, 0),
                            PR("weight_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, PF_F32_MIN),
                            PR("input_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_STATIC_INPUT, PF_F32_MIN)},
                           TPC_NONE, qtl__process_fp8_tensor},
    [QTL_LS_FP8_BLOCK] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, SH_NK, PW_ALWAYS, 0),
                           PR("weight_scale_inv", PK_BLOCK, QTL_DTYPE_F32, SH_BLOCKS, PW_ALWAYS, PF_F32_MIN)},
                          TPC_BLOCK, NULL}, /* vLLM 0.32's block kernels keep weight_scale_inv as loaded */
    [QTL_LS_CT_FP8_TENSOR] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, SH_NK, PW_ALWAYS, 0),
                               PR("weight_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, PF_F32_MIN),
                               PR("input_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_STATIC_INPUT, PF_F32_MIN)},
                              TPC_NONE, qtl__process_fp8_tensor},
    [QTL_LS_CT_FP8_CHANNEL] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, SH_NK, PW_ALWAYS, 0),
                                PR("weight_scale", PK_CHANNEL, QTL_DTYPE_F32, SH_N1, PW_ALWAYS, PF_F32_MIN)},
                               TPC_NONE, NULL},
    [QTL_LS_CT_FP8_BLOCK] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, SH_NK, PW_ALWAYS, 0),
                              PR("weight_scale", PK_BLOCK, QTL_DTYPE_F32, SH_BLOCKS, PW_ALWAYS, PF_F32_MIN)},
                             TPC_BLOCK, NULL},
    [QTL_LS_CT_INT8_TENSOR] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_I8, SH_NK, PW_ALWAYS, 0),
                                PR("weight_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, 0),
                                PR("input_scale", PK_BASE, QTL_DTYPE_F32, SH_ONE, PW_STATIC_INPUT, 0),
                                PR("input_zero_point", PK_BASE, QTL_DTYPE_I8, SH_ONE, PW_STATIC_ASYM_INPUT, 0)},
                               TPC_NONE, qtl__process_int8},
    [QTL_LS_CT_INT8_CHANNEL] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_I8, SH_NK, PW_ALWAYS, 0),
                                 PR("weight_scale", PK_CHANNEL, QTL_DTYPE_F32, SH_N1, PW_ALWAYS, 0),
                                 PR("input_scale", PK_BASE, QTL_DTYPE_F32, SH_ONE, PW_STATIC_INPUT, 0),
                                 PR("input_zero_point", PK_BASE, QTL_DTYPE_I8, SH_ONE, PW_STATIC_ASYM_INPUT, 0)},
                                TPC_NONE, qtl__process_int8},
    [QTL_LS_CT_NVFP4] = {{PR("weight_packed", PK_MODEL_WEIGHT, QTL_DTYPE_U8, SH_N_HALF_K, PW_ALWAYS, 0),
                          PR("weight_scale", PK_GROUP, QTL_DTYPE_F8_E4M3, SH_N_K16, PW_ALWAYS, PF_ALLOW_ZERO),
                          PR("weight_global_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, 0),
                          PR("input_global_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, 0)},
                         TPC_NVFP4, qtl__process_ct_nvfp4},
    [QTL_LS_CT_NVFP4_A16] = {{PR("weight_packed", PK_MODEL_WEIGHT, QTL_DTYPE_U8, SH_N_HALF_K, PW_ALWAYS, 0),
                              PR("weight_scale", PK_GROUP, QTL_DTYPE_F8_E4M3, SH_N_K16, PW_ALWAYS, PF_ALLOW_ZERO),
                              PR("weight_global_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, 0)},
                             TPC_NVFP4, qtl__process_ct_nvfp4},
    /* WNA16: group scales and zero points are split on the input only when the
     * layer is partitioned (no act order, and not channel-wise in a row layer) */
    [QTL_LS_CT_WNA16] = {{PR("weight_packed", PK_PACKED_IN, QTL_DTYPE_I32, SH_N_PACKED_K, PW_ALWAYS, 0),
                          {"weight_scale", PK_GROUP, PDT, SH_N_GROUPS, PW_ALWAYS, 0, PK_CHANNEL},
                          {"weight_zero_point", PK_PACKED_ZP, QTL_DTYPE_I32, SH_PACKED_N_GROUPS, PW_ASYM_WEIGHTS,
                           PF_PACKED, PK_PACKED_ZP_COL},
                          PR("weight_shape", PK_BASE, QTL_DTYPE_I64, SH_TWO, PW_ALWAYS, 0),
                          PR("weight_g_idx", PK_ROW, QTL_DTYPE_I32, SH_K, PW_ACTORDER, 0)},
                         TPC_WNA16, NULL},
    [QTL_LS_MODELOPT_FP8] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, SH_NK, PW_ALWAYS, 0),
                              PR("weight_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, PF_F32_MIN),
                              PR("input_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_STATIC_INPUT, PF_F32_MIN)},
                             TPC_NONE, qtl__process_fp8_tensor},
    [QTL_LS_MODELOPT_NVFP4] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_U8, SH_N_HALF_K, PW_ALWAYS, 0),
                                PR("weight_scale", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, SH_N_K16, PW_ALWAYS,
                                   PF_ALLOW_ZERO),
                                PR("weight_scale_2", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, 0),
                                PR("input_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, 0)},
                               TPC_NVFP4, qtl__process_modelopt_nvfp4},
    [QTL_LS_MODELOPT_W4A16_NVFP4] = {{PR("weight", PK_MODEL_WEIGHT, QTL_DTYPE_U8, SH_N_HALF_K, PW_ALWAYS, 0),
                                      PR("weight_scale", PK_GROUP, QTL_DTYPE_F8_E4M3, SH_N_K16, PW_ALWAYS,
                                         PF_ALLOW_ZERO),
                                      PR("weight_scale_2", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, 0),
                                      PR("input_scale", PK_PER_TENSOR, QTL_DTYPE_F32, SH_SLOTS, PW_ALWAYS, 0)},
                                     TPC_NVFP4, qtl__process_modelopt_nvfp4},
};

const struct scheme_traits *qtl__scheme(enum qtl_layer_scheme s)
{
    return (unsigned)s < QTL_LS_COUNT && traits[s].params[0].suffix ? &traits[s] : NULL;
}
