// Package onnxpb holds the ONNX protobuf schema as Go types, generated from
// onnx.proto in this directory. Edit onnx.proto, never the generated file.
package onnxpb

//go:generate ./gen.sh
