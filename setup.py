"""edgeseg: PyTorch segmentation models to ONNX and TensorRT, run in real time on Jetson and desktop GPUs."""

from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    # Single source of truth for the version, without importing the package at build time.
    for line in (HERE / "edgeseg" / "version.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("edgeseg/version.py has no __version__")


setup(
    name="edgeseg",
    version=read_version(),
    description="Instance and semantic segmentation from PyTorch to TensorRT, real time on Jetson and desktop GPUs",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # One import name: the converters (which need torch, the `convert` extra) are edgeseg.converters.
    packages=find_packages(include=["edgeseg", "edgeseg.*"]),
    # lib/: the TensorRT plugin library, when `cmake --install build/plugins` has put it there.
    # data/weights/: the reference models edgeseg trained itself (edgeseg demo), fp16, 11 MB.
    package_data={"edgeseg": ["py.typed", "data/*.json", "lib/*.so", "data/weights/*.pt", "data/weights/*.json",
                              "data/weights/README.md"]},
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "onnx>=1.15",
        "onnxruntime>=1.17",
    ],
    extras_require={
        # Converting needs PyTorch; the runtime never imports it.
        # torchvision capped: the Mask R-CNN graph reads private attributes of its detection
        # modules (tests/test_torchvision_internals.py fails loudly when they move).
        # pyyaml: detectron2 configs (edgeseg convert detectron2).
        # h5py: matterport's Keras .h5 weights, read without TensorFlow or Keras.
        "convert": ["torch>=2.4", "torchvision>=0.19,<0.30", "pyyaml>=6", "h5py>=3.8"],
        # GPU machines: TensorRT's Python bindings and NVIDIA's cuda-python (cuda.bindings).
        "trt": ["tensorrt>=10.3", "cuda-python>=12.6"],
        # Photos for the demo clip come from scikit-image's bundled data.
        "demo": ["scikit-image>=0.22"],
        # `edgeseg run --track`: SciPy's assignment solver.
        "track": ["scipy>=1.10"],
        # Scoring a tracker (edgeseg.mot, benchmarks/tracking.py): py-motmetrics.
        "mot": ["motmetrics>=1.4"],
        # `edgeseg eval` of instance models: COCO AP.
        "eval": ["pycocotools>=2.0.7"],
        # Clients of a Triton model repository (samples/triton).
        "triton": ["tritonclient[http]>=2.40"],
        # tritonclient[grpc]: Triton's model-config schema, to validate the generated config.pbtxt.
        "test": ["pytest>=8", "scikit-image>=0.22", "mypy>=1.10", "ruff>=0.5", "pycocotools>=2.0.7",
                 "tritonclient[grpc]>=2.40", "types-PyYAML", "motmetrics>=1.4", "h5py>=3.8"],
    },
    entry_points={"console_scripts": ["edgeseg=edgeseg.cli:main"]},
    # CPU build of the custom ops' math (plugins/*/..._math.h), loaded by edgeseg/ops.py with
    # ctypes: a plain shared library with extern "C" functions, no Python C API.
    ext_modules=[
        Extension(
            "edgeseg._ops_cpu",
            sources=[
                "plugins/multilevel_roi_align/roi_align_cpu.cpp",
                "plugins/paste_masks/paste_masks_cpu.cpp",
            ],
            depends=[
                "plugins/common/cpu_threads.h",
                "plugins/common/edgeseg_hd.h",
                "plugins/multilevel_roi_align/roi_align_math.h",
                "plugins/paste_masks/paste_masks_math.h",
            ],
            include_dirs=["plugins"],
            language="c++",
            # -ffp-contract=off: no fused multiply-adds (aarch64 has them always, x86 with -march),
            # so the CPU build gives the same floats as the kernels built with --fmad=false.
            extra_compile_args=["-O3", "-std=c++17", "-ffp-contract=off", "-fopenmp"],
            extra_link_args=["-fopenmp"],
        )
    ],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
