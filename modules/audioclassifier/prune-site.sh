#!/bin/sh
# Remove from an installed site-packages tree what the module never runs (the image's build stage):
# test suites, type stubs, numpy's f2py/distutils/pyinstaller hooks and test-only extensions,
# onnxruntime's model-conversion tools and its C-API library (libonnxruntime.so, 29 MB, for C/C++
# programs: the Python binding carries its own copy of the runtime and does not load it), and
# OpenVINO's Python tools and unused framework front ends. The self-test that follows in the build
# proves nothing needed went; tests/contract/test_image.py runs the module from the image on top.
set -eu
site=$1
cd "$site"
find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
find . -name '*.pyi' -delete
rm -rf numpy/f2py numpy/distutils numpy/_pyinstaller numpy/typing/tests \
       numpy/_core/_simd.*.so numpy/_core/_multiarray_tests.*.so numpy/_core/_umath_tests.*.so \
       numpy/_core/_rational_tests.*.so numpy/_core/_struct_ufunc_tests.*.so \
       numpy/_core/_operand_flag_tests.*.so \
       onnxruntime/transformers onnxruntime/quantization onnxruntime/tools onnxruntime/datasets \
       onnxruntime/capi/libonnxruntime.so.* \
       openvino/tools openvino/frontend/pytorch openvino/frontend/tensorflow openvino/frontend/jax \
       openvino/frontend/paddle openvino/libs/libopenvino_jax_frontend.so.* \
       openvino/libs/libopenvino_tensorflow_lite_frontend.so.* openvino/libs/libopenvino_gguf_frontend.so.* \
       openvino/libs/libopenvino_paddle_frontend.so.* openvino/libs/libopenvino_pytorch_frontend.so.* \
       openvino/libs/libopenvino_tensorflow_frontend.so.*
echo "prune-site: $(du -sm . | cut -f1) MB left in $site"
