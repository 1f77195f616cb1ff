package spectral

import "fmt"

// Text forms let reports (JSON) and flags show the names, not numbers.

func (w Weighting) MarshalText() ([]byte, error) { return marshalEnum(w.String(), int(w)) }
func (r Reg) MarshalText() ([]byte, error)       { return marshalEnum(r.String(), int(r)) }
func (s Solver) MarshalText() ([]byte, error)    { return marshalEnum(s.String(), int(s)) }

func (w *Weighting) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, "weighting", []string{"unweighted", "gaussian"}, (*int)(w))
}

func (r *Reg) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, "regularisation", []string{"rank-one", "eps"}, (*int)(r))
}

func (s *Solver) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, "solver", []string{"auto", "dense", "sparse"}, (*int)(s))
}

func marshalEnum(name string, v int) ([]byte, error) {
	if name[len(name)-2:] == "?)" {
		return nil, fmt.Errorf("spectral: invalid value %d", v)
	}
	return []byte(name), nil
}

func unmarshalEnum(b []byte, what string, names []string, dst *int) error {
	for i, n := range names {
		if string(b) == n {
			*dst = i
			return nil
		}
	}
	return fmt.Errorf("spectral: unknown %s %q (want one of %q)", what, b, names)
}
