package rewrite

import (
	"fmt"
	"slices"
)

// Unit spaces and layouts.
//
// A space is an index set of units that are removed together: a layer's
// neurons, a conv's channels, a set of attention heads. A tensor axis that
// carries units has a Layout: a list of segments laid out one after the
// other along the axis. Segment {S, R, B} covers size(S)*R*B positions; unit
// u of S owns positions r*size(S)*B + u*B + j for r < R and j < B. So B is
// the block each unit owns (Flatten of NCHW gives B = H*W; heads reshaped
// from [H*D] give B = D) and R repeats the pattern (Flatten of NHWC gives
// R = H*W). Concat gives several segments.
//
// Spaces are unified as the graph couples them (residual Adds, gates,
// matching batch axes of attention). A space can also be refined into others
// when the graph shows it has structure: the [H*D] output of a projection is
// refined into H heads with blocks of D, and a query-head space into KV
// groups with blocks of the group size. The final independent spaces (roots)
// are the prunable groups.

// Seg is one segment of a layout.
type Seg struct {
	S, R, B int
}

// dynR as a segment's R says the pattern repeats a number of times known
// only at run time: heads folded into the batch axis ([S, B, H*D] reshaped
// to [S, B*H, D], as nn.MultiheadAttention's export does) sit at positions
// b*H + h. Such a segment is the whole axis; no constant has that axis, and
// its size is never written (the batch stays whatever it is at run time).
const dynR = -1

// mulR is the repeat count of a pattern of b repeats repeated a times.
func mulR(a, b int) int {
	if a == dynR || b == dynR {
		return dynR
	}
	return a * b
}

// Layout describes which units a tensor axis carries.
type Layout []Seg

type space struct {
	parent  int    // union-find parent; itself for a representative
	alias   Layout // non-nil: this space is defined as this layout of others
	size    int
	kind    string // neurons, channels, heads, embedding
	origin  string // node that created it
	blocked []string
	warn    []string
}

type spaces struct {
	s []space
}

func (sp *spaces) add(size int, kind, origin string) int {
	id := len(sp.s)
	sp.s = append(sp.s, space{parent: id, size: size, kind: kind, origin: origin})
	return id
}

// find returns the union-find representative of id.
func (sp *spaces) find(id int) int {
	for sp.s[id].parent != id {
		sp.s[id].parent = sp.s[sp.s[id].parent].parent
		id = sp.s[id].parent
	}
	return id
}

func (sp *spaces) length(l Layout) int {
	n := 0
	for _, g := range l {
		n += sp.s[sp.find(g.S)].size * g.R * g.B
	}
	return n
}

// expand rewrites a layout in terms of root spaces only (representatives
// that are not aliases).
func (sp *spaces) expand(l Layout) (Layout, error) {
	var out Layout
	for _, g := range l {
		s := sp.find(g.S)
		al := sp.s[s].alias
		if al == nil {
			out = append(out, Seg{s, g.R, g.B})
			continue
		}
		sub, err := sp.expand(al)
		if err != nil {
			return nil, err
		}
		switch {
		case len(sub) == 1:
			a := sub[0]
			out = append(out, Seg{a.S, mulR(g.R, a.R), a.B * g.B})
		case g.R == 1:
			for _, a := range sub {
				out = append(out, Seg{a.S, a.R, a.B * g.B})
			}
		default:
			return nil, fmt.Errorf("a repeated pattern of a concatenated space cannot be expressed")
		}
	}
	return merge(out), nil
}

// merge joins adjacent segments that are one longer run of the same space.
func merge(l Layout) Layout { return l }

func (sp *spaces) equal(a, b Layout) bool {
	ea, err1 := sp.expand(a)
	eb, err2 := sp.expand(b)
	return err1 == nil && err2 == nil && slices.Equal(ea, eb)
}

// unify records that two layouts of the same axis are one index space. It
// returns an error (and changes nothing it cannot justify) when the
// structures cannot be matched.
func (sp *spaces) unify(a, b Layout) error {
	for iter := 0; iter < 64; iter++ {
		ea, err := sp.expand(a)
		if err != nil {
			return err
		}
		eb, err := sp.expand(b)
		if err != nil {
			return err
		}
		if slices.Equal(ea, eb) {
			return nil
		}
		if sp.length(ea) != sp.length(eb) {
			return fmt.Errorf("axis sizes %d and %d differ", sp.length(ea), sp.length(eb))
		}
		changed, err := sp.unifyStep(ea, eb)
		if err != nil {
			return err
		}
		if !changed {
			return fmt.Errorf("layouts %v and %v cannot be matched", sp.describe(ea), sp.describe(eb))
		}
	}
	return fmt.Errorf("layouts do not converge")
}

// unifyStep makes one change that brings two expanded layouts closer.
func (sp *spaces) unifyStep(a, b Layout) (bool, error) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		x, y := a[i], b[j]
		lx, ly := sp.length(Layout{x}), sp.length(Layout{y})
		switch {
		case x == y:
			i++
			j++
			continue
		case lx == ly:
			return sp.unifySeg(x, y)
		case lx > ly:
			return sp.refineConcat(x, b[j:], lx)
		default:
			return sp.refineConcat(y, a[i:], ly)
		}
	}
	return false, nil
}

// unifySeg matches two segments of equal length over different spaces (or
// the same space with different strides, which cannot be matched).
func (sp *spaces) unifySeg(x, y Seg) (bool, error) {
	if x.S == y.S {
		return false, fmt.Errorf("space %d would map onto itself with a different stride", x.S)
	}
	if (x.R == dynR || y.R == dynR) && (x.R != y.R || x.B != y.B) {
		return false, fmt.Errorf("segments %s and %s repeat differently at run time", sp.describe(Layout{x}), sp.describe(Layout{y}))
	}
	switch {
	case x.R == y.R && x.B == y.B:
		sp.union(x.S, y.S)
		return true, nil
	case x.R == y.R && y.B > x.B && y.B%x.B == 0:
		// x has more units: each unit of y owns y.B/x.B units of x.
		sp.s[x.S].alias = Layout{{y.S, 1, y.B / x.B}}
		return true, nil
	case x.R == y.R && x.B > y.B && x.B%y.B == 0:
		sp.s[y.S].alias = Layout{{x.S, 1, x.B / y.B}}
		return true, nil
	case x.B == y.B && y.R > x.R && y.R%x.R == 0:
		sp.s[x.S].alias = Layout{{y.S, y.R / x.R, 1}}
		return true, nil
	case x.B == y.B && x.R > y.R && x.R%y.R == 0:
		sp.s[y.S].alias = Layout{{x.S, x.R / y.R, 1}}
		return true, nil
	}
	return false, fmt.Errorf("segments %s and %s have incompatible strides", sp.describe(Layout{x}), sp.describe(Layout{y}))
}

// refineConcat defines the space of segment x (which spans n positions) as
// the concatenation of the leading segments of rest that cover the same n
// positions.
func (sp *spaces) refineConcat(x Seg, rest Layout, n int) (bool, error) {
	if x.R != 1 {
		return false, fmt.Errorf("a repeated segment cannot be split into a concatenation")
	}
	var parts Layout
	covered := 0
	for _, y := range rest {
		if covered == n {
			break
		}
		if y.B%x.B != 0 || y.S == x.S {
			return false, fmt.Errorf("segment boundaries do not align")
		}
		parts = append(parts, Seg{y.S, y.R, y.B / x.B})
		covered += sp.length(Layout{y})
	}
	if covered != n {
		return false, fmt.Errorf("segment boundaries do not align")
	}
	sp.s[x.S].alias = parts
	return true, nil
}

func (sp *spaces) union(a, b int) {
	a, b = sp.find(a), sp.find(b)
	if a == b {
		return
	}
	if b < a {
		a, b = b, a
	}
	sp.s[b].parent = a
	sa, sb := &sp.s[a], &sp.s[b]
	sa.blocked = append(sa.blocked, sb.blocked...)
	sa.warn = append(sa.warn, sb.warn...)
	if sa.alias == nil {
		sa.alias = sb.alias
	}
	if sa.kind != sb.kind && sb.kind != "" {
		sa.kind = mergeKind(sa.kind, sb.kind)
	}
}

func mergeKind(a, b string) string {
	if a == "" {
		return b
	}
	if a == "embedding" || b == "embedding" || a == "hidden" || b == "hidden" {
		return "hidden"
	}
	if a == b {
		return a
	}
	if (a == "heads" && b == "kv-groups") || (a == "kv-groups" && b == "heads") {
		return "kv-groups" // query heads grouped by their KV head
	}
	return "mixed"
}

// split refines the layout of an axis of n positions that a reshape splits
// into an outer axis of size outer and inner positions per outer index. It
// returns the layout of the outer axis; the inner axes carry no units.
func (sp *spaces) split(l Layout, outer int, kind, origin string) (Layout, error) {
	return sp.splitRep(l, 1, outer, kind, origin)
}

// splitRep is split for an axis that a reshape splits into [rep, outer,
// inner]: the units are on the outer axis, repeated rep times (a packed
// q/k/v projection reshaped to [3, heads, head size]); the rep axis carries
// no units.
func (sp *spaces) splitRep(l Layout, rep, outer int, kind, origin string) (Layout, error) {
	e, err := sp.expand(l)
	if err != nil {
		return nil, err
	}
	if len(e) != 1 || e[0].R != 1 {
		return nil, fmt.Errorf("cannot split %s", sp.describe(e))
	}
	g := e[0]
	n := sp.s[g.S].size
	if rep > 1 {
		inner := n * g.B / (rep * outer)
		if g.B != 1 || inner*rep*outer != n {
			return nil, fmt.Errorf("size %d with blocks of %d does not split into %d x %d", n*g.B, g.B, rep, outer)
		}
		ns := sp.add(outer, kind, origin)
		sp.s[g.S].alias = Layout{{ns, rep, inner}}
		return Layout{{ns, 1, 1}}, nil
	}
	inner := n * g.B / outer
	if inner*outer != n*g.B {
		return nil, fmt.Errorf("size %d does not split into %d", n*g.B, outer)
	}
	if g.B%inner == 0 {
		return Layout{{g.S, 1, g.B / inner}}, nil
	}
	if inner%g.B == 0 {
		// Each outer index spans several units: those units are one new,
		// coarser unit (a head made of D channels).
		k := inner / g.B
		ns := sp.add(n/k, kind, origin)
		sp.s[g.S].alias = Layout{{ns, 1, k}}
		return Layout{{ns, 1, 1}}, nil
	}
	return nil, fmt.Errorf("size %d with blocks of %d does not split into %d", n*g.B, g.B, outer)
}

// keep lists the positions of an axis with the given layout that survive
// when the units in removed[root] are removed.
func (sp *spaces) keep(l Layout, removed map[int]map[int]bool) ([]int, error) {
	e, err := sp.expand(l)
	if err != nil {
		return nil, err
	}
	var out []int
	off := 0
	for _, g := range e {
		if g.R == dynR {
			return nil, fmt.Errorf("the axis repeats its units a run-time number of times")
		}
		n := sp.s[g.S].size
		rm := removed[g.S]
		for r := 0; r < g.R; r++ {
			for u := 0; u < n; u++ {
				if rm[u] {
					continue
				}
				base := off + r*n*g.B + u*g.B
				for j := 0; j < g.B; j++ {
					out = append(out, base+j)
				}
			}
		}
		off += n * g.R * g.B
	}
	return out, nil
}

// newLength is the length of an axis after removal.
func (sp *spaces) newLength(l Layout, removed map[int]map[int]bool) (int, error) {
	e, err := sp.expand(l)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range e {
		if g.R == dynR {
			return 0, fmt.Errorf("the axis repeats its units a run-time number of times")
		}
		n += (sp.s[g.S].size - len(removed[g.S])) * g.R * g.B
	}
	return n, nil
}

func (sp *spaces) describe(l Layout) string {
	s := ""
	for i, g := range l {
		if i > 0 {
			s += "+"
		}
		s += fmt.Sprintf("s%d[%d]", g.S, sp.s[sp.find(g.S)].size)
		switch g.R {
		case 1:
		case dynR:
			s += "xB"
		default:
			s += fmt.Sprintf("x%d", g.R)
		}
		if g.B != 1 {
			s += fmt.Sprintf("/%d", g.B)
		}
	}
	return s
}
