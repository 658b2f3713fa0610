// plugin_host_harness.cpp - drives edgeseg's TensorRT plugin library the way TensorRT does, on a
// machine with TensorRT's headers but neither its libraries nor a GPU.
//
//   plugin_host_harness <path of libedgeseg_trt_plugins.so>
//
// dlopen()s the library, looks up getCreators / setLoggerFinder as IPluginRegistry::loadLibrary
// does, and for each plugin: creates it from fields shaped like the ones TensorRT's ONNX parser
// passes (kINT32 scalars, kFLOAT32 arrays, kCHAR identity strings), queries its capability
// interfaces, output types and shapes (through a constant-only IExprBuilder), format
// combinations, serialises it, re-creates it in the runtime phase, clones it, enqueues empty
// work, and checks that bad fields are refused with a logged reason.  Prints one line per check
// ("ok <name>" or "FAIL <name>: <detail>") plus "creator ..." lines for tests/test_plugin_library.py,
// and exits 1 if any check failed.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

int g_failures = 0;

void check(bool ok, const std::string& name, const std::string& detail = "") {
  if (ok) {
    std::printf("ok %s\n", name.c_str());
  } else {
    ++g_failures;
    std::printf("FAIL %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  }
}

// --- a logger finder that keeps the last message -------------------------------------------
class CapturingLogger : public ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) last = msg;
  }
  std::string last;
};

class Finder : public ILoggerFinder {
 public:
  ILogger* findLogger() override { return &logger; }
  CapturingLogger logger;
};

// --- constant-only dimension expressions ------------------------------------------------------
class ConstImpl : public apiv::VDimensionExpr {
 public:
  explicit ConstImpl(int64_t v) : value(v) {}
  bool isConstant() const override { return true; }
  int64_t getConstantValue() const override { return value; }
  bool isSizeTensor() const override { return false; }
  int64_t value;
};

class ConstExpr : public IDimensionExpr {
 public:
  explicit ConstExpr(int64_t v) : impl(v) { mImpl = &impl; }
  ~ConstExpr() noexcept override = default;
  ConstImpl impl;
};

class ConstBuilderImpl : public apiv::VExprBuilder {
 public:
  const IDimensionExpr* constant(int64_t value) override {
    exprs.push_back(std::make_unique<ConstExpr>(value));
    return exprs.back().get();
  }
  const IDimensionExpr* operation(DimensionOperation, const IDimensionExpr&, const IDimensionExpr&) override {
    return nullptr;  // the plugins need none
  }
  const IDimensionExpr* declareSizeTensor(int32_t, const IDimensionExpr&, const IDimensionExpr&) override {
    return nullptr;
  }
  std::vector<std::unique_ptr<ConstExpr>> exprs;
};

class ConstBuilder : public IExprBuilder {
 public:
  ConstBuilder() { mImpl = &impl; }
  ~ConstBuilder() noexcept override = default;
  ConstBuilderImpl impl;
};

DimsExprs dims_exprs(ConstBuilder& b, const std::vector<int64_t>& dims) {
  DimsExprs e{};
  e.nbDims = static_cast<int32_t>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) e.d[i] = b.constant(dims[i]);
  return e;
}

std::string shape_string(const DimsExprs& e) {
  std::string s = "[";
  for (int32_t i = 0; i < e.nbDims; ++i) {
    s += (i ? ", " : "") + (e.d[i] && e.d[i]->isConstant() ? std::to_string(e.d[i]->getConstantValue()) : "?");
  }
  return s + "]";
}

Dims dims(const std::vector<int64_t>& v) {
  Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
  return d;
}

// --- fields as the ONNX parser passes them ------------------------------------------------------
struct Fields {
  std::vector<std::vector<int32_t>> ints;
  std::vector<std::vector<float>> floats;
  std::vector<std::string> strings;
  std::vector<PluginField> list;
  PluginFieldCollection fc{};

  Fields& i(const char* name, int32_t v) {
    ints.reserve(32);
    ints.push_back({v});
    list.emplace_back(name, ints.back().data(), PluginFieldType::kINT32, 1);
    return *this;
  }
  Fields& f(const char* name, std::vector<float> v) {
    floats.reserve(32);
    floats.push_back(std::move(v));
    list.emplace_back(name, floats.back().data(), PluginFieldType::kFLOAT32, static_cast<int32_t>(floats.back().size()));
    return *this;
  }
  Fields& s(const char* name, const char* v) {
    strings.reserve(32);
    strings.emplace_back(v);
    list.emplace_back(name, strings.back().c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(strings.back().size()));
    return *this;
  }
  Fields& identity() { return s("plugin_version", "1").s("plugin_namespace", "edgeseg"); }
  const PluginFieldCollection* get() {
    fc.nbFields = static_cast<int32_t>(list.size());
    fc.fields = list.data();
    return &fc;
  }
};

// Every field of `fc` rendered "name:type:values" for comparisons.
std::string render(const PluginFieldCollection* fc) {
  std::string out;
  for (int32_t k = 0; k < fc->nbFields; ++k) {
    const PluginField& f = fc->fields[k];
    out += std::string(f.name) + ":" + std::to_string(static_cast<int>(f.type)) + ":";
    for (int32_t j = 0; j < f.length; ++j) {
      if (f.type == PluginFieldType::kINT32) out += std::to_string(static_cast<const int32_t*>(f.data)[j]) + ",";
      if (f.type == PluginFieldType::kFLOAT32) out += std::to_string(static_cast<const float*>(f.data)[j]) + ",";
    }
    out += ";";
  }
  return out;
}

struct Destroy {
  void operator()(IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<IPluginV3, Destroy>;

DynamicPluginTensorDesc desc(DataType type, const std::vector<int64_t>& shape,
                             TensorFormat format = TensorFormat::kLINEAR) {
  DynamicPluginTensorDesc d{};
  d.desc.type = type;
  d.desc.format = format;
  d.desc.dims = dims(shape);
  d.desc.scale = -1.0f;
  d.min = d.max = d.opt = dims(shape);
  return d;
}

bool formats_ok(IPluginV3OneBuild* build, std::vector<DynamicPluginTensorDesc> io, int32_t nb_inputs) {
  const int32_t n = static_cast<int32_t>(io.size());
  for (int32_t pos = 0; pos < n; ++pos) {
    if (!build->supportsFormatCombination(pos, io.data(), nb_inputs, n - nb_inputs)) return false;
  }
  return true;
}

// Build-phase plugin -> fields -> runtime-phase plugin; both and a clone must serialise alike.
void check_round_trip(IPluginCreatorV3One* creator, IPluginV3* plugin, const std::string& tag) {
  auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  const std::string fields = render(runtime->getFieldsToSerialize());
  std::printf("fields %s %s\n", tag.c_str(), fields.c_str());
  PluginPtr again(creator->createPlugin("again", runtime->getFieldsToSerialize(), TensorRTPhase::kRUNTIME));
  check(again != nullptr, tag + " re-created from its serialised fields at runtime phase");
  if (!again) return;
  auto* again_rt = static_cast<IPluginV3OneRuntime*>(again->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  check(render(again_rt->getFieldsToSerialize()) == fields, tag + " re-created plugin serialises the same fields");
  PluginPtr copy(plugin->clone());
  check(copy != nullptr, tag + " clone");
  if (copy) {
    auto* copy_rt = static_cast<IPluginV3OneRuntime*>(copy->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(render(copy_rt->getFieldsToSerialize()) == fields, tag + " clone serialises the same fields");
  }
  PluginPtr attached(runtime->attachToContext(nullptr));
  check(attached != nullptr && attached.get() != plugin, tag + " attachToContext gives a new plugin");
}

void check_capabilities(IPluginV3* plugin, const char* name, const std::string& tag) {
  auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
  auto* build = plugin->getCapabilityInterface(PluginCapabilityType::kBUILD);
  auto* runtime = plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME);
  check(core && build && runtime, tag + " has core, build and runtime capabilities");
  if (!core || !build || !runtime) return;
  check(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0 &&
            std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0 &&
            std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0,
        tag + " capability interface kinds");
  check(std::strcmp(core->getPluginName(), name) == 0 && std::strcmp(core->getPluginVersion(), "1") == 0 &&
            std::strcmp(core->getPluginNamespace(), "edgeseg") == 0,
        tag + " name, version and namespace");
  check(std::strcmp(plugin->getInterfaceInfo().kind, "PLUGIN") == 0, tag + " is an IPluginV3");
}

IPluginV3OneBuild* build_of(IPluginV3* p) {
  return static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
}
IPluginV3OneRuntime* runtime_of(IPluginV3* p) {
  return static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
}

void check_refused(IPluginCreatorV3One* creator, Fields& fields, Finder& finder, const std::string& expected,
                   const std::string& tag) {
  finder.logger.last.clear();
  PluginPtr p(creator->createPlugin("bad", fields.get(), TensorRTPhase::kBUILD));
  const bool logged = finder.logger.last.find(expected) != std::string::npos;
  check(p == nullptr && logged, tag, "logged '" + finder.logger.last + "', want '" + expected + "'");
  std::printf("refused %s | %s\n", tag.c_str(), finder.logger.last.c_str());
}

void test_roi_align(IPluginCreatorV3One* creator, Finder& finder) {
  const std::string tag = "MultiLevelRoIAlign";
  Fields fields;
  fields.i("output_height", 14).i("output_width", 14).f("spatial_scales", {0.25f, 0.125f, 0.0625f, 0.03125f})
      .i("sampling_ratio", 2).i("aligned", 0).f("canonical_scale", {224.0f}).i("canonical_level", 4).identity();
  PluginPtr plugin(creator->createPlugin("roi_align", fields.get(), TensorRTPhase::kBUILD));
  check(plugin != nullptr, tag + " created from ONNX-style fields", finder.logger.last);
  if (!plugin) return;
  check_capabilities(plugin.get(), "MultiLevelRoIAlign", tag);
  IPluginV3OneBuild* build = build_of(plugin.get());
  check(build->getNbOutputs() == 1, tag + " has one output");

  for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
    DataType in[5] = {t, t, t, t, t};
    DataType out[1] = {DataType::kINT8};
    check(build->getOutputDataTypes(out, 1, in, 5) == 0 && out[0] == t, tag + " output type follows the features");
  }

  ConstBuilder eb;
  DimsExprs in[5] = {dims_exprs(eb, {1000, 5}), dims_exprs(eb, {1, 256, 200, 304}), dims_exprs(eb, {1, 256, 100, 152}),
                     dims_exprs(eb, {1, 256, 50, 76}), dims_exprs(eb, {1, 256, 25, 38})};
  DimsExprs out[1]{};
  check(build->getOutputShapes(in, 5, nullptr, 0, out, 1, eb) == 0 && shape_string(out[0]) == "[1000, 256, 14, 14]",
        tag + " output shape [R, C, 14, 14]", shape_string(out[0]));
  check(build->getOutputShapes(in, 4, nullptr, 0, out, 1, eb) != 0, tag + " refuses 3 levels for 4 scales");

  const std::vector<int64_t> rois{1000, 5}, level{1, 256, 200, 304}, pooled{1000, 256, 14, 14};
  auto io = [&](DataType a, DataType b, DataType c, TensorFormat fmt) {
    return std::vector<DynamicPluginTensorDesc>{desc(a, rois, fmt), desc(b, level, fmt), desc(b, level, fmt),
                                                desc(b, level, fmt), desc(b, level, fmt), desc(c, pooled, fmt)};
  };
  check(formats_ok(build, io(DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT, TensorFormat::kLINEAR), 5),
        tag + " supports linear float");
  check(formats_ok(build, io(DataType::kFLOAT, DataType::kHALF, DataType::kHALF, TensorFormat::kLINEAR), 5),
        tag + " supports half features with float RoIs");
  check(!formats_ok(build, io(DataType::kHALF, DataType::kHALF, DataType::kHALF, TensorFormat::kLINEAR), 5),
        tag + " refuses half RoIs");
  check(!formats_ok(build, io(DataType::kFLOAT, DataType::kHALF, DataType::kFLOAT, TensorFormat::kLINEAR), 5),
        tag + " refuses half features with a float output");
  {
    auto mixed = io(DataType::kFLOAT, DataType::kHALF, DataType::kHALF, TensorFormat::kLINEAR);
    mixed[3] = desc(DataType::kFLOAT, level);
    check(!formats_ok(build, mixed, 5), tag + " refuses levels of different types");
  }
  check(!formats_ok(build, io(DataType::kINT32, DataType::kINT32, DataType::kINT32, TensorFormat::kLINEAR), 5),
        tag + " refuses int32");
  check(!formats_ok(build, io(DataType::kFLOAT, DataType::kHALF, DataType::kHALF, TensorFormat::kCHW2), 5),
        tag + " refuses a vectorised format");

  // No RoIs: nothing to launch, so enqueue succeeds without a GPU.
  PluginTensorDesc in_desc[5], out_desc[1];
  in_desc[0] = desc(DataType::kFLOAT, {0, 5}).desc;
  for (int l = 1; l < 5; ++l) in_desc[l] = desc(DataType::kFLOAT, {1, 256, 200 >> (l - 1), 304 >> (l - 1)}).desc;
  out_desc[0] = desc(DataType::kFLOAT, {0, 256, 14, 14}).desc;
  const void* inputs[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
  void* outputs[1] = {nullptr};
  IPluginV3OneRuntime* runtime = runtime_of(plugin.get());
  check(runtime->onShapeChange(in_desc, 5, out_desc, 1) == 0 &&
            runtime->enqueue(in_desc, out_desc, inputs, outputs, nullptr, nullptr) == 0,
        tag + " enqueue of zero RoIs succeeds without launching");

  check_round_trip(creator, plugin.get(), tag);

  Fields zero;
  zero.i("output_height", 0).identity();
  check_refused(creator, zero, finder, "output_height and output_width must be >= 1", tag + " refuses output_height 0");
  Fields unknown;
  unknown.i("output_heigth", 7).identity();
  check_refused(creator, unknown, finder, "unknown field 'output_heigth'", tag + " refuses an unknown field");
  Fields typed;
  typed.f("sampling_ratio", {2.0f});
  check_refused(creator, typed, finder, "field 'sampling_ratio' must be an integer", tag + " refuses a float for an int");
  Fields scales;
  scales.f("spatial_scales", {0.25f, -1.0f});
  check_refused(creator, scales, finder, "spatial_scales must be positive", tag + " refuses a negative scale");
  Fields rule;
  rule.i("level_rule", 3).identity();
  check_refused(creator, rule, finder, "level_rule must be 0, 1 or 2", tag + " refuses an unknown level rule");
  Fields detectron;
  detectron.i("level_rule", 1).identity();
  PluginPtr legacy(creator->createPlugin("legacy", detectron.get(), TensorRTPhase::kBUILD));
  check(legacy != nullptr, tag + " takes level_rule 1 (Detectron's level mapping)");
  Fields sampling;
  sampling.i("sampling", 2).identity();
  check_refused(creator, sampling, finder, "sampling must be 0 or 1", tag + " refuses an unknown sampling");
  Fields unpaired;
  unpaired.i("level_rule", 0).i("sampling", 1).identity();
  check_refused(creator, unpaired, finder, "sampling 1 (crop_and_resize) requires level_rule 2 (matterport), got level_rule 0",
                tag + " refuses sampling 1 without level_rule 2 (an old library would drop sampling)");
  Fields no_area;
  no_area.i("level_rule", 2).i("sampling", 1).identity();
  check_refused(creator, no_area, finder, "image_area must be > 0 with level_rule 2",
                tag + " refuses level_rule 2 without image_area");
  // matterport's PyramidROIAlign: crop_and_resize sampling, its level rule, the molded image's area
  Fields matterport;
  matterport.i("output_height", 7).i("output_width", 7).f("spatial_scales", {0.25f, 0.125f, 0.0625f, 0.03125f})
      .i("level_rule", 2).i("sampling", 1).f("image_area", {262144.0f}).identity();
  PluginPtr tf(creator->createPlugin("matterport", matterport.get(), TensorRTPhase::kBUILD));
  check(tf != nullptr, tag + " takes sampling 1 and level_rule 2 (matterport)", finder.logger.last);
  if (tf) check_round_trip(creator, tf.get(), tag + "/matterport");
}

void test_paste_masks(IPluginCreatorV3One* creator, Finder& finder) {
  const std::string tag = "PasteMasks";
  Fields fields;
  fields.i("height", 400).i("width", 600).f("threshold", {0.5f}).i("mode", 0).i("logits", 0).identity();
  PluginPtr plugin(creator->createPlugin("paste", fields.get(), TensorRTPhase::kBUILD));
  check(plugin != nullptr, tag + " created from ONNX-style fields", finder.logger.last);
  if (!plugin) return;
  check_capabilities(plugin.get(), "PasteMasks", tag);
  IPluginV3OneBuild* build = build_of(plugin.get());

  for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
    DataType in[3] = {t, DataType::kFLOAT, DataType::kINT32};
    DataType out[1] = {DataType::kFLOAT};
    check(build->getOutputDataTypes(out, 1, in, 3) == 0 && out[0] == DataType::kINT32,
          tag + " output type is int32 (packed mask bytes)");
  }
  ConstBuilder eb;
  DimsExprs in[3] = {dims_exprs(eb, {100, 28, 28}), dims_exprs(eb, {100, 4}), dims_exprs(eb, {1})};
  DimsExprs out[1]{};
  check(build->getOutputShapes(in, 3, nullptr, 0, out, 1, eb) == 0 && shape_string(out[0]) == "[100, 400, 150]",
        tag + " output shape [K, height, width / 4]", shape_string(out[0]));
  finder.logger.last.clear();
  check(build->getOutputShapes(in, 2, nullptr, 0, out, 1, eb) != 0 &&
            finder.logger.last.find("convert the model again") != std::string::npos,
        tag + " refuses a graph without the count input, saying to re-convert", finder.logger.last);

  auto io = [&](DataType a, DataType b, DataType c, DataType d) {
    return std::vector<DynamicPluginTensorDesc>{desc(a, {100, 28, 28}), desc(b, {100, 4}), desc(c, {1}),
                                                desc(d, {100, 400, 150})};
  };
  const DataType f = DataType::kFLOAT, h = DataType::kHALF, i32 = DataType::kINT32;
  check(formats_ok(build, io(f, f, i32, i32), 3), tag + " supports float masks");
  check(formats_ok(build, io(h, f, i32, i32), 3), tag + " supports half masks with float boxes");
  check(!formats_ok(build, io(h, h, i32, i32), 3), tag + " refuses half boxes");
  check(!formats_ok(build, io(f, f, f, i32), 3), tag + " refuses a float count");
  check(!formats_ok(build, io(f, f, i32, DataType::kUINT8), 3), tag + " refuses uint8 out");
  check(!formats_ok(build, {desc(f, {100, 28, 28}), desc(f, {100, 4}), desc(i32, {100, 400, 150})}, 2),
        tag + " refuses two inputs");

  auto big = io(f, f, i32, i32);
  big[0] = desc(DataType::kFLOAT, {100, 128, 128});
  check(build->configurePlugin(big.data(), 3, big.data() + 3, 1) != 0, tag + " refuses masks above 100 x 100");

  PluginTensorDesc in_desc[3] = {desc(f, {0, 28, 28}).desc, desc(f, {0, 4}).desc, desc(i32, {1}).desc};
  PluginTensorDesc out_desc[1] = {desc(DataType::kINT32, {0, 400, 150}).desc};
  const void* inputs[3] = {nullptr, nullptr, nullptr};
  void* outputs[1] = {nullptr};
  check(runtime_of(plugin.get())->enqueue(in_desc, out_desc, inputs, outputs, nullptr, nullptr) == 0,
        tag + " enqueue of zero masks succeeds without launching");

  check_round_trip(creator, plugin.get(), tag);

  Fields odd;
  odd.i("height", 400).i("width", 602).identity();
  check_refused(creator, odd, finder, "width must be a multiple of 4", tag + " refuses a width not a multiple of 4");
  Fields missing;
  missing.identity();
  check_refused(creator, missing, finder, "height and width (the frame size) must be >= 1",
                tag + " refuses a missing frame size");
  Fields mode;
  mode.i("height", 4).i("width", 4).i("mode", 3);
  check_refused(creator, mode, finder, "mode must be 0 (torchvision), 1 (continuous) or 2 (zoom), got 3",
                tag + " refuses mode 3");
  Fields zoom;
  zoom.i("height", 4).i("width", 4).i("mode", 2).identity();
  PluginPtr zoomed(creator->createPlugin("zoom", zoom.get(), TensorRTPhase::kBUILD));
  check(zoomed != nullptr, tag + " takes mode 2 (zoom, matterport)", finder.logger.last);
}

void test_zoom_linear(IPluginCreatorV3One* creator, Finder& finder) {
  const std::string tag = "ZoomLinear";
  Fields fields;
  fields.i("height", 341).i("width", 512).i("canvas_height", 512).i("canvas_width", 512).i("top", 85).i("left", 0)
      .f("mean", {123.7f, 116.8f, 103.9f}).identity();
  PluginPtr plugin(creator->createPlugin("zoom", fields.get(), TensorRTPhase::kBUILD));
  check(plugin != nullptr, tag + " created from ONNX-style fields", finder.logger.last);
  if (!plugin) return;
  check_capabilities(plugin.get(), "ZoomLinear", tag);
  IPluginV3OneBuild* build = build_of(plugin.get());
  check(build->getNbOutputs() == 1, tag + " has one output");

  const DataType f = DataType::kFLOAT, h = DataType::kHALF;
  {
    DataType in[2] = {f, f};
    DataType out[1] = {h};
    check(build->getOutputDataTypes(out, 1, in, 2) == 0 && out[0] == f, tag + " output type is float");
  }
  ConstBuilder eb;
  DimsExprs in[2] = {dims_exprs(eb, {400, 600, 3}), dims_exprs(eb, {2})};
  DimsExprs out[1]{};
  check(build->getOutputShapes(in, 2, nullptr, 0, out, 1, eb) == 0 && shape_string(out[0]) == "[3, 512, 512]",
        tag + " output shape [C, canvas_height, canvas_width]", shape_string(out[0]));
  check(build->getOutputShapes(in, 1, nullptr, 0, out, 1, eb) != 0, tag + " refuses one input");
  DimsExprs flat[2] = {dims_exprs(eb, {400, 1800}), dims_exprs(eb, {2})};
  check(build->getOutputShapes(flat, 2, nullptr, 0, out, 1, eb) != 0, tag + " refuses a 2-D image");

  auto io = [&](DataType a, DataType b, DataType c, TensorFormat fmt) {
    return std::vector<DynamicPluginTensorDesc>{desc(a, {400, 600, 3}, fmt), desc(b, {2}, fmt),
                                                desc(c, {3, 512, 512}, fmt)};
  };
  check(formats_ok(build, io(f, f, f, TensorFormat::kLINEAR), 2), tag + " supports linear float");
  check(!formats_ok(build, io(h, f, f, TensorFormat::kLINEAR), 2), tag + " refuses a half image");
  check(!formats_ok(build, io(f, h, f, TensorFormat::kLINEAR), 2), tag + " refuses a half value range");
  check(!formats_ok(build, io(f, f, h, TensorFormat::kLINEAR), 2), tag + " refuses a half output");
  check(!formats_ok(build, io(DataType::kINT32, f, f, TensorFormat::kLINEAR), 2), tag + " refuses an int32 image");
  check(!formats_ok(build, io(f, f, f, TensorFormat::kCHW2), 2), tag + " refuses a vectorised format");

  {
    auto ok = io(f, f, f, TensorFormat::kLINEAR);
    check(build->configurePlugin(ok.data(), 2, ok.data() + 2, 1) == 0, tag + " configures for 3 channels");
    auto four = ok;
    four[0] = desc(f, {400, 600, 4});
    finder.logger.last.clear();
    check(build->configurePlugin(four.data(), 2, four.data() + 2, 1) != 0 &&
              finder.logger.last.find("mean holds 3 values for an image of 4 channels") != std::string::npos,
          tag + " refuses 3 means for 4 channels", finder.logger.last);
    auto range = ok;
    range[1] = desc(f, {3});
    check(build->configurePlugin(range.data(), 2, range.data() + 2, 1) != 0, tag + " refuses a value range of 3");
  }

  {
    // A GPU-less enqueue: the launcher validates before it launches, so a window outside the
    // canvas would be an error; here the shapes are right and the null pointers are refused.
    PluginTensorDesc in_desc[2] = {desc(f, {400, 600, 3}).desc, desc(f, {2}).desc};
    PluginTensorDesc out_desc[1] = {desc(f, {3, 512, 512}).desc};
    const void* inputs[2] = {nullptr, nullptr};
    void* outputs[1] = {nullptr};
    finder.logger.last.clear();
    check(runtime_of(plugin.get())->enqueue(in_desc, out_desc, inputs, outputs, nullptr, nullptr) != 0 &&
              finder.logger.last.find("kernel launch failed") != std::string::npos,
          tag + " enqueue refuses null buffers without launching", finder.logger.last);
  }

  check_round_trip(creator, plugin.get(), tag);

  Fields one_mean;
  one_mean.i("height", 4).i("width", 4).i("canvas_height", 4).i("canvas_width", 4).f("mean", {0.5f}).identity();
  PluginPtr single(creator->createPlugin("single", one_mean.get(), TensorRTPhase::kBUILD));
  check(single != nullptr, tag + " takes one mean for every channel");
  Fields missing;
  missing.identity();
  check_refused(creator, missing, finder, "height and width (the zoomed size) must be >= 1",
                tag + " refuses a missing zoomed size");
  Fields outside;
  outside.i("height", 341).i("width", 512).i("canvas_height", 512).i("canvas_width", 512).i("top", 200);
  check_refused(creator, outside, finder, "must lie inside the canvas", tag + " refuses a window outside the canvas");
  Fields means;
  means.i("height", 4).i("width", 4).i("canvas_height", 4).i("canvas_width", 4)
      .f("mean", {0, 0, 0, 0, 0, 0, 0, 0, 0});
  check_refused(creator, means, finder, "mean must hold 1 to 8 values, got 9", tag + " refuses 9 means");
  Fields typed;
  typed.f("top", {1.0f});
  check_refused(creator, typed, finder, "field 'top' must be an integer", tag + " refuses a float for an int");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <libedgeseg_trt_plugins.so>\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::printf("FAIL dlopen: %s\n", dlerror());
    return 1;
  }
  using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
  using SetLoggerFinder = void (*)(ILoggerFinder*);
  auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
  auto set_logger_finder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
  check(get_creators != nullptr && set_logger_finder != nullptr, "library exports getCreators and setLoggerFinder");
  if (!get_creators || !set_logger_finder) return 1;

  static Finder finder;
  set_logger_finder(&finder);
  int32_t count = -1;
  IPluginCreatorInterface* const* creators = get_creators(count);
  check(count == 3 && creators != nullptr, "three creators");
  for (int32_t k = 0; k < count; ++k) {
    IPluginCreatorInterface* iface = creators[k];
    const InterfaceInfo info = iface->getInterfaceInfo();
    check(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1, "creator is IPluginCreatorV3One");
    auto* creator = static_cast<IPluginCreatorV3One*>(iface);
    const PluginFieldCollection* names = creator->getFieldNames();
    std::string list;
    for (int32_t i = 0; i < names->nbFields; ++i) list += std::string(i ? "," : "") + names->fields[i].name;
    std::printf("creator %s %s %s %s\n", creator->getPluginName(), creator->getPluginVersion(),
                creator->getPluginNamespace(), list.c_str());
    if (std::strcmp(creator->getPluginName(), "MultiLevelRoIAlign") == 0) test_roi_align(creator, finder);
    if (std::strcmp(creator->getPluginName(), "PasteMasks") == 0) test_paste_masks(creator, finder);
    if (std::strcmp(creator->getPluginName(), "ZoomLinear") == 0) test_zoom_linear(creator, finder);
  }
  std::printf("%d failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
