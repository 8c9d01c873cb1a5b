# Generates clipper_defaults.h (namespace clipper::defaults) from src/clipper_native/defaults.json,
# the one source of Clipper's defaults that Python reads too (clipper_native.defaults). Runs at
# configure time; the JSON is a configure dependency, so editing it regenerates the header on build.
function(clipper_generate_defaults json_path header_path)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${json_path}")
  file(READ "${json_path}" json)
  set(body "")
  foreach(section network engine application replica)
    string(JSON count LENGTH "${json}" ${section})
    math(EXPR last "${count} - 1")
    string(APPEND body "\n// ${section}\n")
    foreach(index RANGE ${last})
      string(JSON key MEMBER "${json}" ${section} ${index})
      string(JSON type TYPE "${json}" ${section} ${key})
      string(JSON value GET "${json}" ${section} ${key})
      if(type STREQUAL "STRING")
        string(APPEND body "inline constexpr std::string_view ${key} = \"${value}\";\n")
      elseif(type STREQUAL "BOOLEAN")
        if(value)
          string(APPEND body "inline constexpr bool ${key} = true;\n")
        else()
          string(APPEND body "inline constexpr bool ${key} = false;\n")
        endif()
      elseif(value MATCHES "^-?[0-9]+$")
        string(APPEND body "inline constexpr std::int64_t ${key} = ${value};\n")
      else()
        string(APPEND body "inline constexpr double ${key} = ${value};\n")
      endif()
    endforeach()
  endforeach()
  string(APPEND body "\n// input types: canonical name, wire code (the enum in rpc/model_rpc.fbs), element size\n")
  string(APPEND body "struct InputTypeEntry {\n  std::string_view name;\n  int code;\n  int element_bytes;\n};\n")
  string(APPEND body "struct InputTypeAlias {\n  std::string_view alias;\n  int code;\n};\n")
  string(JSON type_count LENGTH "${json}" input_types)
  math(EXPR last_type "${type_count} - 1")
  set(entries "")
  set(aliases "")
  set(alias_count 0)
  foreach(index RANGE ${last_type})
    string(JSON name GET "${json}" input_types ${index} name)
    string(JSON code GET "${json}" input_types ${index} code)
    string(JSON element_bytes GET "${json}" input_types ${index} element_bytes)
    if(NOT code EQUAL index)
      message(FATAL_ERROR "${json_path}: input_types[${index}] has code ${code}; list them in code order")
    endif()
    string(APPEND entries "    {\"${name}\", ${code}, ${element_bytes}},\n")
    string(JSON names_count LENGTH "${json}" input_types ${index} aliases)
    math(EXPR last_alias "${names_count} - 1")
    foreach(alias_index RANGE ${last_alias})
      string(JSON alias GET "${json}" input_types ${index} aliases ${alias_index})
      string(APPEND aliases "    {\"${alias}\", ${code}},\n")
      math(EXPR alias_count "${alias_count} + 1")
    endforeach()
  endforeach()
  string(APPEND body "inline constexpr std::array<InputTypeEntry, ${type_count}> input_types{{\n${entries}}};\n")
  string(APPEND body "inline constexpr std::array<InputTypeAlias, ${alias_count}> input_type_aliases{{\n${aliases}}};\n")
  set(content "// Generated from src/clipper_native/defaults.json by cmake/ClipperDefaults.cmake: do not edit.
// Clipper's defaults, shared with Python (clipper_native.defaults). No thread affinity.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace clipper::defaults {
${body}
}  // namespace clipper::defaults
")
  file(CONFIGURE OUTPUT "${header_path}" CONTENT "${content}" @ONLY)
endfunction()

# Generates the container SDK's copy of the defaults a replica needs (the frontend's RPC address, the
# heartbeat interval, the input-type table) as a Python module, from the same JSON. The SDK ships
# without clipper_native, so it cannot read the JSON through clipper_native.defaults; installed with
# the generated wire code (clipper.wire), which the SDK carries. Runs at configure time, like the header.
function(clipper_generate_sdk_defaults json_path module_path)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${json_path}")
  file(READ "${json_path}" json)
  string(JSON bind_address GET "${json}" network bind_address)
  string(JSON rpc_port GET "${json}" network rpc_port)
  string(JSON heartbeat_interval_millis GET "${json}" replica heartbeat_interval_millis)
  string(JSON type_count LENGTH "${json}" input_types)
  math(EXPR last_type "${type_count} - 1")
  set(names "")
  set(aliases "")
  foreach(index RANGE ${last_type})
    string(JSON name GET "${json}" input_types ${index} name)
    string(APPEND names "    \"${name}\",\n")
    string(JSON names_count LENGTH "${json}" input_types ${index} aliases)
    math(EXPR last_alias "${names_count} - 1")
    foreach(alias_index RANGE ${last_alias})
      string(JSON alias GET "${json}" input_types ${index} aliases ${alias_index})
      string(APPEND aliases "    \"${alias}\": \"${name}\",\n")
    endforeach()
  endforeach()
  set(content "# Generated from src/clipper_native/defaults.json by cmake/ClipperDefaults.cmake: do not edit.
\"\"\"The defaults a model container needs, from Clipper's one source of defaults (the frontend reads
the same file through clipper_native.defaults).\"\"\"

BIND_ADDRESS = \"${bind_address}\"
RPC_PORT = ${rpc_port}
HEARTBEAT_INTERVAL_MILLIS = ${heartbeat_interval_millis}

# Canonical input type names in wire-code order (\"bytes\" is 0), and every accepted spelling.
INPUT_TYPE_NAMES = (
${names})
INPUT_TYPE_ALIASES = {
${aliases}}
")
  file(CONFIGURE OUTPUT "${module_path}" CONTENT "${content}" @ONLY)
endfunction()
