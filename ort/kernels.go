package ort

import "golang.org/x/sys/cpu"

// ConvBlock is the channel block of ONNX Runtime's blocked (NCHWc)
// convolution kernels on this CPU: ORT only takes that fast path for a Conv
// whose channel counts are multiples of it, and falls back to a much slower
// im2col path otherwise. MLAS uses 16 channels with AVX-512F and 8 with
// AVX2+FMA; without those there is no blocked path and any width is as good.
// For the CUDA provider, 8 suits its tensor-core kernels.
func ConvBlock(provider string) int {
	if provider == ProviderCUDA {
		return 8
	}
	switch {
	case cpu.X86.HasAVX512F:
		return 16
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		return 8
	}
	return 1
}
