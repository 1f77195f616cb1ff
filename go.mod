module github.com/onnx-cria/onnx-cria

go 1.26.8

require google.golang.org/protobuf v1.36.12

require (
	github.com/yalue/onnxruntime_go v1.27.0 // indirect
	gonum.org/v1/gonum v0.17.0 // indirect
)
