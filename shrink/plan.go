package shrink

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/onnx-cria/onnx-cria/rewrite"
)

// The width planner. Every group's units are removed one at a time, in the
// order the criterion ranks them, at most PerRound of a group's width per
// round; the written widths are then snapped to the group's block (Conv
// channels to ONNX Runtime's kernel block with --round-to auto), so that
// alignment constrains the widths the model ends with rather than forcing
// a whole block off every group each round. The budget is checked on the
// snapped widths, against the input model's analysis, so the last round
// stops at the shortest prefix of its removals whose snapped widths meet
// the target; of the widths one snapping step either side of that point it
// keeps those that meet the target with the least overshoot. The overshoot
// is therefore at most one step (one unit, or one block of channels) of
// one group.

// unitState is one group of the input model as the loop sees it.
type unitState struct {
	name     string
	width    int // original
	block    int // written widths are multiples of it, or the original
	minW     int
	eligible bool
	order    []int // original units removed, in the order removed
	// rest lists the other original units, least important first as last
	// scored (in index order before the first scoring).
	rest []int
	kind string
	// score is each original unit's score when last ranked (units removed
	// in an earlier round keep that round's): what landing weighs.
	score map[int]float64
}

func (s *unitState) natural() int { return s.width - len(s.order) }

// floor is the narrowest width the group may be written with.
func (s *unitState) floor() int {
	if !s.eligible {
		return s.width
	}
	if s.block <= 1 {
		return min(s.minW, s.width)
	}
	lo := (s.minW + s.block - 1) / s.block * s.block
	if lo >= s.width {
		return s.width
	}
	return lo
}

// snap is the written width for natural width n: the nearest multiple of
// the block at or above the floor (ties keep more units), or the original
// width.
func (s *unitState) snap(n int) int {
	if n >= s.width {
		return s.width
	}
	if lo := s.floor(); n <= lo {
		return lo
	}
	if s.block <= 1 {
		return n
	}
	down := n / s.block * s.block
	up := min(down+s.block, s.width)
	if n-down < up-n {
		return down
	}
	return up
}

// step is the next allowed width below w, or w at the floor.
func (s *unitState) step(w int) int {
	if w <= s.floor() {
		return w
	}
	if s.block <= 1 {
		return w - 1
	}
	return max(s.floor(), (w-1)/s.block*s.block)
}

// removals lists the original units a written width w removes: the units
// removed so far, in order, then the least important of the others.
func (s *unitState) removals(w int) []int {
	n := s.width - w
	if n <= 0 {
		return nil
	}
	out := slices.Clone(s.order[:min(n, len(s.order))])
	if n > len(s.order) {
		out = append(out, s.rest[:n-len(s.order)]...)
	}
	return out
}

// widths are the written width of every group, by name.
type widths map[string]int

// snapped writes every group at its nearest block multiple (snap) of its
// width in natural, or of its natural width when natural leaves it out.
func (r *run) snapped(natural map[string]int) widths {
	return r.widthsBy(natural, (*unitState).snap)
}

func (r *run) widthsBy(natural map[string]int, snap func(*unitState, int) int) widths {
	w := widths{}
	for _, s := range r.units {
		n, ok := natural[s.name]
		if !ok {
			n = s.natural()
		}
		w[s.name] = snap(s, n)
	}
	return w
}

func (r *run) floors() widths {
	w := widths{}
	for _, s := range r.units {
		w[s.name] = s.floor()
	}
	return w
}

// planFor is the plan, in the input's units, that writes widths w.
func (r *run) planFor(w widths) rewrite.Plan {
	p := rewrite.Plan{}
	for _, s := range r.units {
		if rm := s.removals(w[s.name]); len(rm) > 0 {
			p[s.name] = rm
		}
	}
	return p
}

// naturalPlan is the plan of the units removed so far, unsnapped: the model
// the next round scores.
func (r *run) naturalPlan() rewrite.Plan {
	p := rewrite.Plan{}
	for _, s := range r.units {
		if len(s.order) > 0 {
			p[s.name] = slices.Clone(s.order)
		}
	}
	return p
}

// candidate is one unit a round may remove.
type candidate struct {
	s    *unitState
	unit int     // original index
	key  float64 // order of removal within the round
	gi   int
}

// candidates lists each group's lowest-scored units within its share of
// the round, in the order a partial round takes them: the k-th unit of
// every group before the (k+1)-th (per-group ranking, so that groups shrink
// alike), by normalised score (global), or by normalised score per unit of
// cost (cost: the group's parameters or FLOPs per unit relative to the
// mean over groups).
func (r *run) candidates(states []*unitState, scores map[string][]float64, unitCost map[string]float64) []candidate {
	var items []candidate
	meanCost := 0.0
	for _, c := range unitCost {
		meanCost += c / float64(len(unitCost))
	}
	for gi, s := range states {
		sc := scores[s.name]
		capN := max(1, int(math.Floor(r.cfg.PerRound*float64(s.natural()))))
		capN = min(capN, s.natural()-s.floor())
		maxScore := 0.0
		for _, v := range sc {
			maxScore = math.Max(maxScore, math.Abs(v))
		}
		for k := 0; k < capN; k++ {
			u := s.rest[k]
			key := float64(k+1) / float64(capN)
			switch r.cfg.Ranking {
			case "global", "cost":
				key = sc[k]
				if maxScore > 0 {
					key /= maxScore
				}
				if r.cfg.Ranking == "cost" && unitCost[s.name] > 0 && meanCost > 0 {
					key /= unitCost[s.name] / meanCost
				}
			}
			items = append(items, candidate{s: s, unit: u, key: key, gi: gi})
		}
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].key != items[j].key {
			return items[i].key < items[j].key
		}
		return items[i].gi < items[j].gi
	})
	return items
}

// naturalAfter is every group's natural width once items are removed.
func naturalAfter(items []candidate) map[string]int {
	n := map[string]int{}
	for _, it := range items {
		if _, ok := n[it.s.name]; !ok {
			n[it.s.name] = it.s.natural()
		}
		n[it.s.name]--
	}
	return n
}

// land finds the shortest prefix of a round's items whose snapped widths
// meet the goal (the whole list does), then of those widths and the ones a
// single snapping step below the prefix before it gives, keeps what meets
// the goal with the least overshoot. For a latency goal each of those is
// a timing (one per group): a jump of a whole block in one group moves
// latency in steps the prefix alone cannot land between.
func (r *run) land(items []candidate) ([]candidate, widths, error) {
	cost := func(p int) (float64, widths, error) {
		w := r.snapped(naturalAfter(items[:p]))
		c, err := r.budget.cost(r, w)
		return c, w, err
	}
	lo, hi := 1, len(items)
	for lo < hi {
		mid := (lo + hi) / 2
		c, _, err := cost(mid)
		if err != nil {
			return nil, nil, err
		}
		if c <= r.budget.goal {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	bestC, best, err := cost(lo)
	if err != nil {
		return nil, nil, err
	}
	_, base, err := cost(lo - 1)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range r.units {
		if !s.eligible {
			continue
		}
		try := clone(base)
		if try[s.name] = s.step(base[s.name]); try[s.name] == base[s.name] {
			continue
		}
		c, err := r.budget.cost(r, try)
		if err != nil {
			return nil, nil, err
		}
		if c <= r.budget.goal && c > bestC {
			bestC, best = c, try
		}
	}
	nearest, err := r.finish(bestC, best)
	if err != nil {
		return nil, nil, err
	}
	pick, prefix := nearest, lo
	if r.cfg.RoundChannels > 1 && r.budget.kind != TargetLatency {
		r.rep.Landing = &Landing{Kind: "nearest", NearestDamage: r.damageOf(best)}
		l, ok, err := r.balanced(items)
		if err != nil {
			return nil, nil, err
		}
		if ok && l.damage < r.rep.Landing.NearestDamage {
			bal, err := r.finish(l.cost, l.w)
			if err != nil {
				return nil, nil, err
			}
			// Never further past the target than the nearest-block
			// landing, unless within landingSlack of it.
			if r.budget.reduction(bal.cost)-r.cfg.Target <= max(landingSlack, r.budget.reduction(nearest.cost)-r.cfg.Target) {
				pick, prefix = bal, l.prefix
				r.rep.Landing.Kind = "balanced"
			}
		}
		r.rep.Landing.Damage = r.damageOf(pick.w)
	}
	r.rep.Warnings = append(r.rep.Warnings, pick.warnings...)
	return items[:prefix], pick.w, nil
}

// finished is a landing's widths once finish has run.
type finished struct {
	w        widths
	cost     float64
	warnings []string
}

// finish lets one group end off its block when block-aligned widths w
// (cost c) land more than landingSlack past the target: it gives back
// units, a unit at a time, while the goal is met. Only with the automatic
// (CPU-derived) channel block, and never for a latency goal: off-block
// widths run on the slower kernels.
func (r *run) finish(c float64, w widths) (finished, error) {
	f := finished{w: w, cost: c}
	if r.cfg.RoundChannels <= 1 || r.budget.kind == TargetLatency || r.budget.reduction(c)-r.cfg.Target <= landingSlack {
		return f, nil
	}
	oc, ow, err := r.offBlock(w)
	if err != nil || ow == nil || oc <= c {
		return f, err
	}
	for name, v := range ow {
		if s := r.byName[name]; v != w[name] {
			f.warnings = append(f.warnings, fmt.Sprintf("%s: %d units, off the block of %d, to land the target (block-aligned widths would have overshot it to %.4f); its convolutions may run on ONNX Runtime's slower path", name, v, s.block, r.budget.reduction(c)))
		}
	}
	f.w, f.cost = ow, oc
	return f, nil
}

// landingSlack is how far past the target block-aligned widths may land
// before one group is allowed off its block to land closer. Only the
// automatic (CPU-derived) channel block allows it; an explicit --round-to
// is kept everywhere.
const landingSlack = 0.02

// offBlock gives one blocked group of the landing widths back units, one
// at a time up to a block's worth, while the goal is still met. Of the
// groups whose widths then land within landingSlack of the target it
// picks the one whose units touch the smallest share of the input's FLOPs
// (its Convs are what
// run on the slower kernels: a squeeze-and-excitation layer costs
// nothing, a depthwise stage a lot); when none does, the one that comes
// closest. nil if no group can give any back.
func (r *run) offBlock(from widths) (float64, widths, error) {
	bestC, bestF := -1.0, math.Inf(1)
	var best widths
	near := false
	for _, s := range r.units {
		if !s.eligible || s.block <= 1 {
			continue
		}
		var keep widths
		keepC := 0.0
		for w := from[s.name] + 1; w < s.width && w < from[s.name]+s.block; w++ {
			try := clone(from)
			try[s.name] = w
			c, err := r.budget.cost(r, try)
			if err != nil {
				return 0, nil, err
			}
			if c > r.budget.goal {
				break
			}
			keep, keepC = try, c
		}
		if keep == nil {
			continue
		}
		f := r.origShares()[s.name][1]
		within := r.budget.reduction(keepC)-r.cfg.Target <= landingSlack
		switch {
		case within && (!near || f < bestF):
			bestC, bestF, best, near = keepC, f, keep, true
		case !near && keepC > bestC:
			bestC, best = keepC, keep
		}
	}
	return bestC, best, nil
}

// origShares is groupShares of the input, computed once per run: the
// off-block choice and the report both read it.
func (r *run) origShares() map[string][2]float64 {
	if r.shares == nil {
		r.shares = groupShares(r.orig)
	}
	return r.shares
}

func clone(w widths) widths {
	out := widths{}
	for k, v := range w {
		out[k] = v
	}
	return out
}
