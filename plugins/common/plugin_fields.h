// plugin_fields.h - a plugin's attributes <-> TensorRT's PluginFieldCollection, from one list.
//
// Each plugin keeps its attributes in a plain struct with a `visit(V&)` method that names every
// attribute once, in order:
//
//   template <typename V> void visit(V& v) {
//     v.int32("output_height", output_height);
//     v.floats("spatial_scales", spatial_scales);
//     ...
//   }
//
// The visitors below turn that one list into the three things TensorRT asks for: the field names
// a creator advertises (FieldNames), the attributes parsed from the fields TensorRT passes to
// createPlugin (FieldReader: from the ONNX node's attributes at build time, from
// getFieldsToSerialize's output when an engine is deserialised), and the fields a plugin
// serialises (FieldWriter).  So a new attribute cannot be parsed but forgotten in serialisation.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace edgeseg {
namespace plugin {

// The fields a creator advertises (getFieldNames): name, type and length (0 = any), no data.
class FieldNames {
 public:
  void int32(const char* name, int32_t&) { add(name, nvinfer1::PluginFieldType::kINT32, 1); }
  void float32(const char* name, float&) { add(name, nvinfer1::PluginFieldType::kFLOAT32, 1); }
  void floats(const char* name, std::vector<float>&) { add(name, nvinfer1::PluginFieldType::kFLOAT32, 0); }

  const nvinfer1::PluginFieldCollection* collection();

 private:
  void add(const char* name, nvinfer1::PluginFieldType type, int32_t length);
  std::vector<nvinfer1::PluginField> fields_;
  nvinfer1::PluginFieldCollection collection_{};
};

// Reads the attributes from a collection.  Fields absent from it keep the struct's defaults.  Any
// integer field type converts to an int32 attribute (TensorRT's ONNX parser narrows ONNX's int64
// attributes to kINT32; a hand-built network may pass kINT64), any float or integer type to a
// float attribute.  The first problem (wrong type, wrong length, out-of-range integer, a field no
// attribute has) is kept in error(); later ones are ignored.
class FieldReader {
 public:
  // `ignored`: names of fields that may be present but are not attributes (the ONNX node's
  // plugin_version / plugin_namespace), nullptr-terminated.
  FieldReader(const nvinfer1::PluginFieldCollection* fc, const char* const* ignored);

  void int32(const char* name, int32_t& value);
  void float32(const char* name, float& value);
  void floats(const char* name, std::vector<float>& values);

  // Call after visiting every attribute: also reports fields that matched none.
  bool ok();
  const std::string& error() const { return error_; }

 private:
  const nvinfer1::PluginField* find(const char* name);
  bool numbers(const nvinfer1::PluginField& field, std::vector<double>* out);
  void fail(const std::string& message);

  const nvinfer1::PluginFieldCollection* fc_;
  const char* const* ignored_;
  std::vector<bool> used_;
  std::string error_;
};

// The fields a plugin serialises: kINT32 / kFLOAT32 pointing at the attribute struct's own
// members, so the collection stays valid as long as that struct does and is not modified.
class FieldWriter {
 public:
  void int32(const char* name, int32_t& value) {
    fields_.emplace_back(name, &value, nvinfer1::PluginFieldType::kINT32, 1);
  }
  void float32(const char* name, float& value) {
    fields_.emplace_back(name, &value, nvinfer1::PluginFieldType::kFLOAT32, 1);
  }
  void floats(const char* name, std::vector<float>& values) {
    fields_.emplace_back(name, values.data(), nvinfer1::PluginFieldType::kFLOAT32,
                         static_cast<int32_t>(values.size()));
  }

  const nvinfer1::PluginFieldCollection* collection();

 private:
  std::vector<nvinfer1::PluginField> fields_;
  nvinfer1::PluginFieldCollection collection_{};
};

// Fields of the ONNX nodes that identify the plugin rather than configure it.
extern const char* const kIdentityFields[];

}  // namespace plugin
}  // namespace edgeseg
