package ops

import (
	"fmt"
	"sort"
)

// Key names an op: its domain, canonical ("" for the default ONNX domain),
// and its type.
type Key struct {
	Domain, Op string
}

func (k Key) String() string {
	if k.Domain == "" {
		return k.Op
	}
	return k.Domain + "::" + k.Op
}

// Canonical returns the canonical name of a domain: "ai.onnx" is the
// default domain "".
func Canonical(domain string) string {
	if domain == "ai.onnx" {
		return ""
	}
	return domain
}

// Table maps ops to entries of type E by the opset version they apply
// from. Fill it from init functions only; lookups may then run
// concurrently.
type Table[E any] struct {
	byKey  map[Key][]version[E] // sorted by since
	derive func(Class) (E, bool)
}

type version[E any] struct {
	since   int64
	value   E
	removed bool
}

// Entry is one registration: op k has value Value from opset Since on, or
// no entry from Since on when Removed.
type Entry[E any] struct {
	Key     Key
	Since   int64
	Value   E
	Removed bool
}

// NewTable returns an empty table. An op the table has no entry for
// (at any version) falls back to its class in Facts: derive turns the class
// into an entry, or reports that the class gives none. derive may be nil.
func NewTable[E any](derive func(Class) (E, bool)) *Table[E] {
	return &Table[E]{byKey: map[Key][]version[E]{}, derive: derive}
}

// Add registers v for ops of domain from opset version since on. It panics
// when an op already has an entry at that version: two registrations of
// one version would make the result depend on init order.
func (t *Table[E]) Add(domain string, since int64, v E, ops ...string) {
	for _, op := range ops {
		t.put(Key{Canonical(domain), op}, version[E]{since: since, value: v})
	}
}

// Remove ends the ops' entries at opset version since: from there on they
// have none (as ONNX removed Upsample at version 10).
func (t *Table[E]) Remove(domain string, since int64, ops ...string) {
	for _, op := range ops {
		t.put(Key{Canonical(domain), op}, version[E]{since: since, removed: true})
	}
}

func (t *Table[E]) put(k Key, v version[E]) {
	if v.since < 1 {
		panic(fmt.Sprintf("ops: %s: opset versions start at 1, not %d", k, v.since))
	}
	vs := t.byKey[k]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].since >= v.since })
	if i < len(vs) && vs[i].since == v.since {
		panic(fmt.Sprintf("ops: %s registered twice at version %d", k, v.since))
	}
	t.byKey[k] = append(vs[:i], append([]version[E]{v}, vs[i:]...)...)
}

// Lookup returns the entry of op in domain for a model that imports
// version opset of that domain: the entry with the largest since-version
// not above opset, unless that is a removal. An op with no entry in the
// table at any version is looked up in Facts and derived from its class.
func (t *Table[E]) Lookup(domain, op string, opset int64) (E, bool) {
	k := Key{Canonical(domain), op}
	vs, own := t.byKey[k]
	if own || t.derive == nil {
		return resolve(vs, opset)
	}
	var zero E
	c, ok := Facts.Lookup(k.Domain, op, opset)
	if !ok {
		return zero, false
	}
	if e, ok := t.derive(c); ok {
		return e, true
	}
	return zero, false
}

func resolve[E any](vs []version[E], opset int64) (E, bool) {
	var zero E
	i := sort.Search(len(vs), func(i int) bool { return vs[i].since > opset }) - 1
	if i < 0 || vs[i].removed {
		return zero, false
	}
	return vs[i].value, true
}

// Entries lists the table's own registrations (not those derived from
// Facts), sorted by domain, op and version.
func (t *Table[E]) Entries() []Entry[E] {
	var out []Entry[E]
	for k, vs := range t.byKey {
		for _, v := range vs {
			out = append(out, Entry[E]{Key: k, Since: v.since, Value: v.value, Removed: v.removed})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Key != b.Key {
			if a.Key.Domain != b.Key.Domain {
				return a.Key.Domain < b.Key.Domain
			}
			return a.Key.Op < b.Key.Op
		}
		return a.Since < b.Since
	})
	return out
}
