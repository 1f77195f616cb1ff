package onnxio

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Geometry is the geometry of a Conv or pooling node with explicit pads.
type Geometry struct {
	Kernel, Strides, Dilations []int64
	PadsBegin, PadsEnd         []int64
	In, Out                    []int64 // spatial sizes
}

// ConvGeometry is the geometry of Conv or pooling node n on input x of
// shape xd.
func ConvGeometry(n *onnxpb.NodeProto, x string, xd, kernel []int64, dilate bool) (*Geometry, error) {
	ns := len(xd) - 2
	if ns < 1 {
		return nil, fmt.Errorf("input %q has rank %d, want at least 3", x, len(xd))
	}
	g := &Geometry{Kernel: kernel, In: xd[2:]}
	for k, v := range g.In {
		if v < 0 {
			return nil, fmt.Errorf("spatial axis %d of %q has no static size (shape %v)", k, x, xd)
		}
	}
	if len(kernel) != ns {
		return nil, fmt.Errorf("kernel_shape %v does not match %d spatial axes", kernel, ns)
	}
	ones := func() []int64 {
		o := make([]int64, ns)
		for k := range o {
			o[k] = 1
		}
		return o
	}
	g.Strides = AttrInts(n, "strides")
	if g.Strides == nil {
		g.Strides = ones()
	}
	g.Dilations = nil
	if dilate {
		g.Dilations = AttrInts(n, "dilations")
	}
	if g.Dilations == nil {
		g.Dilations = ones()
	}
	pads := AttrInts(n, "pads")
	g.PadsBegin, g.PadsEnd = make([]int64, ns), make([]int64, ns)
	if pads != nil {
		copy(g.PadsBegin, pads[:ns])
		copy(g.PadsEnd, pads[ns:])
	}
	autoPad := AttrString(n, "auto_pad", "NOTSET")
	ceil := AttrInt(n, "ceil_mode", 0) != 0
	g.Out = make([]int64, ns)
	for k := 0; k < ns; k++ {
		ek := (kernel[k]-1)*g.Dilations[k] + 1
		switch autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			o := (g.In[k] + g.Strides[k] - 1) / g.Strides[k]
			total := max(0, (o-1)*g.Strides[k]+ek-g.In[k])
			lo := total / 2
			if autoPad == "SAME_LOWER" {
				lo = total - total/2
			}
			g.PadsBegin[k], g.PadsEnd[k] = lo, total-lo
		case "VALID":
			g.PadsBegin[k], g.PadsEnd[k] = 0, 0
		case "NOTSET", "":
		default:
			return nil, fmt.Errorf("unknown auto_pad %q", autoPad)
		}
		span := g.In[k] + g.PadsBegin[k] + g.PadsEnd[k] - ek
		g.Out[k] = span/g.Strides[k] + 1
		if ceil && span%g.Strides[k] != 0 {
			return nil, fmt.Errorf("ceil_mode=1 changes the output size here; not supported")
		}
	}
	return g, nil
}

func (g *Geometry) Pads() []int64 { return append(append([]int64{}, g.PadsBegin...), g.PadsEnd...) }

// OutputPadding makes a ConvTranspose with this geometry give back the
// input size: in = s (out-1) + op + ek - pb - pe.
func (g *Geometry) OutputPadding() []int64 {
	op := make([]int64, len(g.In))
	for k := range op {
		ek := (g.Kernel[k]-1)*g.Dilations[k] + 1
		op[k] = g.In[k] - (g.Strides[k]*(g.Out[k]-1) + ek - g.PadsBegin[k] - g.PadsEnd[k])
	}
	return op
}
