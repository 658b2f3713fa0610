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
    # OpenCV is not a requirement: on a Jetson the venv sees JetPack's OpenCV (built with
    # GStreamer) through --system-site-packages, and a pip OpenCV in the venv would shadow it.
    # Desktops name the `opencv` extra; `import edgeseg` without any OpenCV names both ways.
    install_requires=[
        "numpy>=1.24",
        "onnx>=1.15",
        "onnxruntime>=1.17",
    ],
    extras_require={
        # pip's OpenCV, for machines without a system one (desktops, CI). Not on a Jetson.
        "opencv": ["opencv-python-headless>=4.8"],
        # Converting needs PyTorch; the runtime never imports it.
        # torchvision capped: the Mask R-CNN graph reads private attributes of its detection
        # modules (tests/test_torchvision_internals.py fails loudly when they move).
        # pyyaml: detectron2 configs (edgeseg convert detectron2).
        # h5py: matterport's Keras .h5 weights, read without TensorFlow or Keras.
        "convert": ["torch>=2.4", "torchvision>=0.19,<0.30", "pyyaml>=6", "h5py>=3.8"],
        # GPU machines: TensorRT's Python bindings and NVIDIA's cuda-python (cuda.bindings), whose
        # major version must be the CUDA major of the driver (cuda-python 13 refuses a CUDA 12
        # driver): trt-cu12 for JetPack 6 and CUDA 12 drivers, trt-cu13 for JetPack 7 and CUDA 13
        # drivers; trt is trt-cu12. (Pins: edgeseg/trt/gpu_imports.py CUDA_PYTHON_PINS.)
        "trt": ["tensorrt>=10.3", "cuda-python>=12.6,<13"],
        "trt-cu12": ["tensorrt>=10.3", "cuda-python>=12.6,<13"],
        "trt-cu13": ["tensorrt>=10.3", "cuda-python>=13,<14"],
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
        # The checkers and stubs are pinned exactly: a new release changes what they report, and
        # the suite runs them (constraints.txt pins the rest of the test install; README).
        "test": ["pytest>=8", "scikit-image>=0.22", "mypy==2.4.1", "ruff==0.17.6", "pycocotools>=2.0.7",
                 "tritonclient[grpc]>=2.40", "types-PyYAML==6.0.12.20261122", "motmetrics>=1.4", "h5py>=3.8"],
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
                "plugins/zoom_linear/zoom_linear_cpu.cpp",
            ],
            depends=[
                "plugins/common/cpu_threads.h",
                "plugins/common/edgeseg_hd.h",
                "plugins/multilevel_roi_align/roi_align_math.h",
                "plugins/paste_masks/paste_masks_math.h",
                "plugins/common/zoom_taps.h",
                "plugins/zoom_linear/zoom_linear_math.h",
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
