package shrink

import (
	"math"
	"sort"

	"github.com/onnx-cria/onnx-cria/rewrite"
)

// item is one step of one group: units removed together in a round.
type item struct {
	g     *rewrite.Group
	units []int   // current indices, in removal order
	key   float64 // ordering for a partial last round
	order int
	step  int // index among its group's steps
}

// selectUnits chooses the units a round removes: each group's
// lowest-scored units within its steps; when taking all of them would pass
// the goal, the shortest prefix of the steps (ordered per group or by
// normalised score) that reaches it, completed by the step that overshoots
// least.
func (r *run) selectUnits(a *rewrite.Analysis, groups []*rewrite.Group, steps map[string][]int, scored map[string]*Scored) (rewrite.Plan, error) {
	items := candidates(groups, steps, scored, r.cfg.Ranking == "global")
	after, err := a.ParamsAfter(planOf(items))
	if err != nil {
		return nil, err
	}
	if after > r.goal {
		return planOf(items), nil
	}
	// The last round: the shortest prefix that reaches the goal.
	lo, hi := 1, len(items)
	for lo < hi {
		mid := (lo + hi) / 2
		pa, err := a.ParamsAfter(planOf(items[:mid]))
		if err != nil {
			return nil, err
		}
		if pa <= r.goal {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	take, err := closest(a, items[:lo-1], items[lo-1:], r.goal)
	if err != nil {
		return nil, err
	}
	return planOf(take), nil
}

// candidates lists every group's steps with its lowest-scored units, in the
// order a partial round takes them: step by step across groups, or by the
// worst normalised score of the step with global ranking.
func candidates(groups []*rewrite.Group, steps map[string][]int, scored map[string]*Scored, global bool) []item {
	var items []item
	for gi, g := range groups {
		s := scored[g.Name]
		st := steps[g.Name]
		order := ascending(s.Scores)
		maxScore := 0.0
		for _, v := range s.Scores {
			maxScore = math.Max(maxScore, math.Abs(v))
		}
		done := 0
		for k, upto := range st {
			chunk := order[done:upto]
			key := float64(k+1) / float64(len(st))
			if global {
				worst := math.Inf(-1)
				for _, u := range chunk {
					worst = math.Max(worst, s.Scores[u])
				}
				if maxScore > 0 {
					worst /= maxScore
				}
				key = worst
			}
			items = append(items, item{g: g, units: chunk, key: key, order: gi, step: k})
			done = upto
		}
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].key != items[j].key {
			return items[i].key < items[j].key
		}
		return items[i].order < items[j].order
	})
	return items
}

func planOf(its []item) rewrite.Plan {
	p := rewrite.Plan{}
	for _, it := range its {
		p[it.g.Name] = append(p[it.g.Name], it.units...)
	}
	return p
}

// closest completes a last round: prefix alone stays above the goal, and of
// the remaining steps that may follow it (a group's steps in their order),
// it adds the one that reaches the goal with the fewest parameters removed,
// so that the overshoot is the smallest single step rather than whichever
// step happened to come next.
func closest(a *rewrite.Analysis, prefix, rest []item, goal int64) ([]item, error) {
	taken := map[string]int{}
	for _, it := range prefix {
		taken[it.g.Name]++
	}
	best, bestPA := -1, int64(-1)
	try := append([]item(nil), prefix...)
	for j, it := range rest {
		if it.step != taken[it.g.Name] {
			continue
		}
		pa, err := a.ParamsAfter(planOf(append(try, it)))
		if err != nil {
			return nil, err
		}
		if pa <= goal && pa > bestPA {
			best, bestPA = j, pa
		}
	}
	return append(try, rest[best]), nil
}
