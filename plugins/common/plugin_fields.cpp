// plugin_fields.cpp - see plugin_fields.h.
#include "common/plugin_fields.h"

#include <cmath>
#include <cstring>

namespace edgeseg {
namespace plugin {

using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;

const char* const kIdentityFields[] = {"plugin_version", "plugin_namespace", nullptr};

namespace {

template <typename T>
void append(const void* data, int32_t length, std::vector<double>* out) {
  const T* values = static_cast<const T*>(data);
  for (int32_t i = 0; i < length; ++i) out->push_back(static_cast<double>(values[i]));
}

bool is_integer_type(PluginFieldType type) {
  return type == PluginFieldType::kINT8 || type == PluginFieldType::kINT16 ||
         type == PluginFieldType::kINT32 || type == PluginFieldType::kINT64;
}

}  // namespace

void FieldNames::add(const char* name, PluginFieldType type, int32_t length) {
  fields_.emplace_back(name, nullptr, type, length);
}

const PluginFieldCollection* FieldNames::collection() {
  collection_.nbFields = static_cast<int32_t>(fields_.size());
  collection_.fields = fields_.data();
  return &collection_;
}

const PluginFieldCollection* FieldWriter::collection() {
  collection_.nbFields = static_cast<int32_t>(fields_.size());
  collection_.fields = fields_.data();
  return &collection_;
}

FieldReader::FieldReader(const PluginFieldCollection* fc, const char* const* ignored)
    : fc_(fc), ignored_(ignored) {
  const int32_t count = (fc != nullptr && fc->fields != nullptr) ? fc->nbFields : 0;
  used_.assign(count > 0 ? static_cast<size_t>(count) : 0, false);
  if (fc != nullptr && fc->nbFields > 0 && fc->fields == nullptr) {
    fail("the field collection has " + std::to_string(fc->nbFields) + " fields but no field array");
  }
}

void FieldReader::fail(const std::string& message) {
  if (error_.empty()) error_ = message;
}

const PluginField* FieldReader::find(const char* name) {
  for (size_t i = 0; i < used_.size(); ++i) {
    const PluginField& field = fc_->fields[i];
    if (field.name != nullptr && std::strcmp(field.name, name) == 0) {
      used_[i] = true;
      return &field;
    }
  }
  return nullptr;
}

bool FieldReader::numbers(const PluginField& field, std::vector<double>* out) {
  out->clear();
  if (field.length < 0 || (field.length > 0 && field.data == nullptr)) {
    fail(std::string("field '") + field.name + "' has length " + std::to_string(field.length) +
         (field.data == nullptr ? " and no data" : ""));
    return false;
  }
  switch (field.type) {
    case PluginFieldType::kINT8: append<int8_t>(field.data, field.length, out); return true;
    case PluginFieldType::kINT16: append<int16_t>(field.data, field.length, out); return true;
    case PluginFieldType::kINT32: append<int32_t>(field.data, field.length, out); return true;
    case PluginFieldType::kINT64: append<int64_t>(field.data, field.length, out); return true;
    case PluginFieldType::kFLOAT32: append<float>(field.data, field.length, out); return true;
    case PluginFieldType::kFLOAT64: append<double>(field.data, field.length, out); return true;
    default:
      fail(std::string("field '") + field.name + "' has an unsupported type (PluginFieldType " +
           std::to_string(static_cast<int>(field.type)) + "); give it as an integer or a float");
      return false;
  }
}

void FieldReader::int32(const char* name, int32_t& value) {
  const PluginField* field = find(name);
  std::vector<double> values;
  if (field == nullptr || !numbers(*field, &values)) return;
  if (!is_integer_type(field->type)) {
    fail(std::string("field '") + name + "' must be an integer, got a float");
  } else if (values.size() != 1) {
    fail(std::string("field '") + name + "' must hold one value, got " + std::to_string(values.size()));
  } else if (values[0] < INT32_MIN || values[0] > INT32_MAX) {
    fail(std::string("field '") + name + "' is out of the int32 range");
  } else {
    value = static_cast<int32_t>(values[0]);
  }
}

void FieldReader::float32(const char* name, float& value) {
  const PluginField* field = find(name);
  std::vector<double> values;
  if (field == nullptr || !numbers(*field, &values)) return;
  if (values.size() != 1) {
    fail(std::string("field '") + name + "' must hold one value, got " + std::to_string(values.size()));
  } else {
    value = static_cast<float>(values[0]);
  }
}

void FieldReader::floats(const char* name, std::vector<float>& out) {
  const PluginField* field = find(name);
  std::vector<double> values;
  if (field == nullptr || !numbers(*field, &values)) return;
  out.assign(values.begin(), values.end());
}

bool FieldReader::ok() {
  for (size_t i = 0; i < used_.size() && error_.empty(); ++i) {
    const char* name = fc_->fields[i].name;
    if (used_[i]) continue;
    bool ignored = false;
    for (const char* const* it = ignored_; it != nullptr && *it != nullptr; ++it) {
      if (name != nullptr && std::strcmp(name, *it) == 0) ignored = true;
    }
    if (!ignored) fail(std::string("unknown field '") + (name != nullptr ? name : "(null)") + "'");
  }
  return error_.empty();
}

}  // namespace plugin
}  // namespace edgeseg
