//go:build !cgo || !linux

package onnx

import (
	"errors"

	"github.com/kilnml/kiln/ml"
)

var errNoORT = errors.New("ONNX Runtime needs a cgo build on linux; this binary runs ONNX models on gonnx")

func initORT(string) (string, error) { return "", errNoORT }

func loadORT([]byte, string, ml.LoadOptions) (ml.Model, error) { return nil, errNoORT }
