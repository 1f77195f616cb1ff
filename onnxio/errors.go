package onnxio

import (
	"fmt"
	"sort"
	"strings"
)

// An Error is one problem found in a model, located by file, graph, node and
// tensor where those are known.
type Error struct {
	File   string // model file, if known
	Graph  string // graph name when the problem sits in a subgraph
	Node   string // node name, or "#<index>" for an unnamed node
	Op     string // op type of Node
	Tensor string // tensor (value, initializer) at fault
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Graph != "" {
		fmt.Fprintf(&b, "graph %q: ", e.Graph)
	}
	if e.Node != "" {
		if e.Op != "" {
			fmt.Fprintf(&b, "node %s (%s): ", e.Node, e.Op)
		} else {
			fmt.Fprintf(&b, "node %s: ", e.Node)
		}
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, "tensor %q: ", e.Tensor)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList gathers every problem rather than stopping at the first, like
// go/scanner.ErrorList.
type ErrorList []*Error

func (l *ErrorList) Add(e *Error) { *l = append(*l, e) }

func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(l))
	for _, e := range l {
		b.WriteString("\n\t")
		b.WriteString(e.Error())
	}
	return b.String()
}

// Err returns nil for an empty list, so that callers can return it directly.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Sort orders the list by graph, node and tensor for stable reports.
func (l ErrorList) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Graph != b.Graph {
			return a.Graph < b.Graph
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Tensor < b.Tensor
	})
}
