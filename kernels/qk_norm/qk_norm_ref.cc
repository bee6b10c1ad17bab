#include "kernels/qk_norm/qk_norm.h"

#include "kernels/rmsnorm/rmsnorm.h"

namespace loraserve::kernels {

Status qk_norm_ref(const QkNormParams& p) {
  if (p.num_tokens < 0) return invalid_argument("qk_norm: num_tokens < 0");
  if (p.num_q_heads <= 0 || p.num_kv_heads <= 0 || p.head_dim <= 0) {
    return invalid_argument("qk_norm: heads and head_dim must be > 0");
  }
  if (p.num_tokens == 0) return ok_status();
  if (!p.q || !p.k || !p.q_weight || !p.k_weight) {
    return invalid_argument("qk_norm: null q, k or weight");
  }
  // q and k are contiguous rows of head_dim: the layer RMSNorm over them.
  RmsNormParams rq;
  rq.x = p.q;
  rq.weight = p.q_weight;
  rq.out = p.q;
  rq.num_tokens = p.num_tokens * p.num_q_heads;
  rq.hidden = p.head_dim;
  rq.eps = p.eps;
  LS_RETURN_IF_ERROR(rmsnorm_ref(rq));
  RmsNormParams rk = rq;
  rk.x = p.k;
  rk.weight = p.k_weight;
  rk.out = p.k;
  rk.num_tokens = p.num_tokens * p.num_kv_heads;
  return rmsnorm_ref(rk);
}

}  // namespace loraserve::kernels
