# cmake -DNM=<nm> -DLAYERS=<qtl_layers.cmake> -DSTAMP=<file> -P check_layers.cmake
#
# The symbol half of the layering of src/ (the include paths are the other):
# every global symbol an object of a layer uses and some layer defines must be
# defined by that layer itself or by one of its dependencies. Catches calls
# through qtl.h, which every layer can include. LAYERS (written by the top
# CMakeLists) sets QTL_LAYER_NAMES and, per layer L, QTL_LAYER_OBJECTS_L and
# QTL_LAYER_DEPS_L.
include(${LAYERS})
if(NOT NM)
  message(WARNING "check_layers: no nm, symbol layering not checked")
  file(TOUCH ${STAMP})
  return()
endif()

# "<object>: <symbol> <type> ..." lines of nm -A -g -P.
function(qtl_nm objects out_def out_undef)
  execute_process(COMMAND ${NM} -A -g -P ${objects} OUTPUT_VARIABLE _out RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "check_layers: ${NM} failed: ${_err}")
  endif()
  string(REPLACE "\n" ";" _lines "${_out}")
  set(_def "")
  set(_undef "")
  foreach(_l IN LISTS _lines)
    if(_l MATCHES "^(.*): ([^ ]+) ([A-Za-z])( |$)")
      get_filename_component(_obj "${CMAKE_MATCH_1}" NAME)
      if(CMAKE_MATCH_3 STREQUAL "U")
        list(APPEND _undef "${_obj}|${CMAKE_MATCH_2}")
      elseif(NOT CMAKE_MATCH_3 STREQUAL "w" AND NOT CMAKE_MATCH_3 STREQUAL "v")
        list(APPEND _def "${CMAKE_MATCH_2}")
      endif()
    endif()
  endforeach()
  set(${out_def} "${_def}" PARENT_SCOPE)
  set(${out_undef} "${_undef}" PARENT_SCOPE)
endfunction()

foreach(_layer IN LISTS QTL_LAYER_NAMES)
  qtl_nm("${QTL_LAYER_OBJECTS_${_layer}}" _def _undef_${_layer})
  foreach(_s IN LISTS _def)
    set(_owner_${_s} ${_layer})
  endforeach()
endforeach()

set(_bad "")
foreach(_layer IN LISTS QTL_LAYER_NAMES)
  foreach(_u IN LISTS _undef_${_layer})
    string(REPLACE "|" ";" _u "${_u}")
    list(GET _u 0 _obj)
    list(GET _u 1 _sym)
    set(_owner "${_owner_${_sym}}")
    if(_owner AND NOT _owner STREQUAL _layer)
      list(FIND QTL_LAYER_DEPS_${_layer} ${_owner} _i)
      if(_i LESS 0)
        string(APPEND _bad "\n  ${_layer}/${_obj} uses ${_sym} of layer ${_owner}")
      endif()
    endif()
  endforeach()
endforeach()
if(_bad)
  message(FATAL_ERROR "check_layers: a layer of src/ uses a layer it does not depend on "
                      "(QTL_LAYER_DEPS_* in CMakeLists.txt):${_bad}")
endif()
file(TOUCH ${STAMP})
