// Package shrink runs the iterative pruning loop (docs/METHOD.md §5):
// capture the hidden states of every prunable group, score the units with
// a criterion, remove the lowest-scored ones within each round's share,
// rewrite the model physically, and repeat until the target is met; then,
// when configured, recover (package recover) and measure.
//
// # Targets
//
// A target is a reduction 1 - after/before of what Config.Kind counts:
// parameters (TargetParams, the default; every element of a floating-point
// initializer or Constant tensor, and every weight of a quantized one, as
// onnxio.Model.ParamCount counts them), FLOPs (TargetFLOPs; two per
// multiply-add of Conv, ConvTranspose, Gemm, MatMul and MatMulNBits for one
// sample, as onnxio.FLOPs counts them), or ONNX Runtime
// latency at Config.LatencyBatch (TargetLatency), measured on this machine
// against the input, the two timed in turns so that a change of load slows
// both alike; every timing is recorded in the report.
//
// # The width planner
//
// Every group's units are removed one at a time in the criterion's order,
// at most PerRound of a group's current width per round and never below
// its minimum width. Within a round the candidates are ordered by Ranking:
// per-group (the default) takes the k-th unit of every group before the
// (k+1)-th, so groups shrink alike; global orders them by score normalised
// per group; cost by normalised score per unit of the target's cost (a
// unit's parameters, or the FLOPs it accounts for, relative to the mean
// over groups), so that cheap-to-keep units survive.
//
// The widths the model is written with are the natural widths (what the
// loop removed) snapped to each group's block: Conv channel counts (every
// group whose units are a Conv's channels somewhere, rewrite.Group.Conv) to
// ONNX Runtime's kernel block with the automatic rounding, every group to RoundTo
// when that is above 1. Snapping takes the nearest multiple at or above the
// floor (a tie keeps more units), so the block constrains the written widths
// instead of forcing a whole block off every group each round. The budget is
// counted on the snapped widths, against the input's analysis (no model is
// written to count parameters or FLOPs), and the last round stops at the
// shortest prefix of its removals whose snapped widths meet the target; of
// those widths and the ones one snapping step of a single group below the
// prefix before it, it keeps what meets the target with the least
// overshoot. With the automatic channel block it also decides the
// blocked groups together
// (balance.go): each may end at the multiple below or above its natural
// width, and the landing that meets the target removing the least
// importance (scores as a share of their group's) wins. With the
// automatic channel block, when the landing overshoots by more than 0.02,
// one group may give back units off its block to land closer (the
// report warns). The model is written as the input less the planned units
// in one edit, so rounds never accumulate edits.
//
// # Criteria
//
// The criteria share one interface so that comparisons differ only in the
// criterion: spectral structural importance, the local baselines the
// paper argues against (magnitude of incoming weights, mean absolute
// activation, random, first-order Taylor), and the output-aware ones that
// weigh a unit's states by the weights that read it (wanda, flap, obs,
// spectral-flap). The default, DefaultCriterion, is obs: measured best on
// average after the least-squares refit (docs/RESULTS.md).
package shrink
