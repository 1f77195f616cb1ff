package shrink

import (
	"math"
	"sort"
)

// Landing with blocks. Snapping each group to its nearest block multiple
// decides every group alone: a 96-wide group whose units run out at 55
// goes to 48 (7 below) rather than 64 (9 above), and the other groups pay
// for the difference with the units the ranking wanted them to keep. The
// balance below decides the blocked groups together instead. For a prefix
// of the round's removals each blocked group may be written at the block
// multiple below or above its natural width; the choice is the one that
// meets the goal removing the least importance, importance being each
// unit's score as a share of its group's scores (the per-group ranking's
// premise: every group is worth the same, and within a group the scores
// say which units matter). Prefixes from the shortest that can meet the
// goal to the whole round are tried, and the least total damage wins.

// damage is the share of the group's importance that written width w
// removes: the scores of the units it removes over all its units' scores
// as last ranked, or the share of units when nothing is scored.
func (s *unitState) damage(w int) float64 {
	rm := s.removals(w)
	total := 0.0
	for u := range s.width { // in index order: the same sum every run
		total += s.score[u]
	}
	if total == 0 {
		return float64(len(rm)) / float64(s.width)
	}
	d := 0.0
	for _, u := range rm {
		d += s.score[u]
	}
	return d / total
}

// snapDown and snapUp are the block multiples at or below and at or above
// natural width n, within the floor and the original width.
func (s *unitState) snapDown(n int) int {
	return s.snapWith(n, func(n, b int) int { return n / b * b })
}

func (s *unitState) snapUp(n int) int {
	return s.snapWith(n, func(n, b int) int { return (n + b - 1) / b * b })
}

func (s *unitState) snapWith(n int, round func(n, block int) int) int {
	switch {
	case n >= s.width:
		return s.width
	case n <= s.floor():
		return s.floor()
	case s.block <= 1:
		return n
	}
	return min(s.width, max(s.floor(), round(n, s.block)))
}

// damageOf is the summed damage of widths w over the eligible groups.
func (r *run) damageOf(w widths) float64 {
	d := 0.0
	for _, s := range r.units {
		if s.eligible {
			d += s.damage(w[s.name])
		}
	}
	return d
}

// landing is one way to end the last round.
type landing struct {
	prefix int
	w      widths
	cost   float64
	damage float64
}

// balance writes the natural widths after items[:p] with each blocked
// group at the block multiple above, then steps groups down to the
// multiple below, least damage per unit of cost first, until the goal is
// met; then any group the goal still allows goes back up, the most
// damaging step first. ok is false when even every group down misses the
// goal.
func (r *run) balance(items []candidate, p int) (landing, bool, error) {
	nat := naturalAfter(items[:p])
	up, down := r.widthsBy(nat, (*unitState).snapUp), r.widthsBy(nat, (*unitState).snapDown)
	w := clone(up)
	c, err := r.budget.cost(r, w)
	if err != nil {
		return landing{}, false, err
	}
	type move struct {
		s          *unitState
		loss, gain float64
	}
	var moves []move
	for _, s := range r.units {
		if w[s.name] == down[s.name] {
			continue
		}
		try := clone(w)
		try[s.name] = down[s.name]
		ct, err := r.budget.cost(r, try)
		if err != nil {
			return landing{}, false, err
		}
		moves = append(moves, move{s, s.damage(down[s.name]) - s.damage(w[s.name]), c - ct})
	}
	perCost := func(m move) float64 {
		if m.gain <= 0 {
			return math.Inf(1)
		}
		return m.loss / m.gain
	}
	sort.SliceStable(moves, func(i, j int) bool { return perCost(moves[i]) < perCost(moves[j]) })
	var taken []move
	for _, m := range moves {
		if c <= r.budget.goal {
			break
		}
		w[m.s.name] = down[m.s.name]
		if c, err = r.budget.cost(r, w); err != nil {
			return landing{}, false, err
		}
		taken = append(taken, m)
	}
	if c > r.budget.goal {
		return landing{}, false, nil
	}
	sort.SliceStable(taken, func(i, j int) bool { return taken[i].loss > taken[j].loss })
	for _, m := range taken {
		try := clone(w)
		try[m.s.name] = up[m.s.name]
		ct, err := r.budget.cost(r, try)
		if err != nil {
			return landing{}, false, err
		}
		if ct <= r.budget.goal {
			w, c = try, ct
		}
	}
	return landing{prefix: p, w: w, cost: c, damage: r.damageOf(w)}, true, nil
}

// maxBalanced caps the prefixes balance tries in a round.
const maxBalanced = 64

// balanced is the least damaging landing over the round's prefixes, or
// ok false when no prefix can meet the goal with blocked widths.
func (r *run) balanced(items []candidate) (landing, bool, error) {
	// Every group at its multiple below only removes more as the prefix
	// grows, so the shortest prefix that can meet the goal is found by
	// bisection.
	allDown := func(p int) (bool, error) {
		c, err := r.budget.cost(r, r.widthsBy(naturalAfter(items[:p]), (*unitState).snapDown))
		return c <= r.budget.goal, err
	}
	lo, hi := 0, len(items)
	if ok, err := allDown(hi); err != nil || !ok {
		return landing{}, false, err
	}
	for lo < hi {
		mid := (lo + hi) / 2
		ok, err := allDown(mid)
		if err != nil {
			return landing{}, false, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	stride := max(1, (len(items)-lo+maxBalanced-1)/maxBalanced)
	var best landing
	found := false
	for p := lo; p <= len(items); p += stride {
		l, ok, err := r.balance(items, p)
		if err != nil {
			return landing{}, false, err
		}
		if ok && (!found || l.damage < best.damage || l.damage == best.damage && l.cost > best.cost) {
			best, found = l, true
		}
	}
	return best, found, nil
}
