# libqtl.so for the Python package (python/qtl loads it with ctypes; `pip install .` builds it
# through scikit-build-core with -DQTL_SHARED=ON, see pyproject.toml).
#
# Two modes in one file:
#  - include()d by CMakeLists.txt (QTL_SHARED=ON), right after the static libqtl: the target
#    qtl_shared, a SHARED library of the same layer objects (QTL_OBJECTS: base format quant exec
#    load, built -fvisibility=hidden with QTL_API = visibility("default")), linked with jansson,
#    OpenMP, Threads and m, installed into the wheel's qtl/ package directory (component
#    qtl_python only: the static libraries, the CLI and the header stay out of the wheel).
#    A post-build step runs this file in script mode on the result.
#  - cmake -DNM=<nm> -DLIB=<libqtl.so> -DHEADER=<qtl.h> -P shared.cmake: the export check. The
#    dynamic symbols libqtl.so defines must be exactly the functions qtl.h declares with QTL_API,
#    less those of the libraries not in it (qtl_fixture_*: libqtl_fixture; qtl_dist_*: libqtl_mpi).
#    Any other exported symbol, or a declared function missing, fails the build.

if(CMAKE_SCRIPT_MODE_FILE)
  file(READ ${HEADER} _h)
  # "QTL_API <return type> <name>(" -- the name and its parenthesis are on the declaration's first line
  string(REGEX MATCHALL "QTL_API[^;(]*[ *]qtl_[a-z0-9_]+\\(" _decls "${_h}")
  set(_want "")
  foreach(_d IN LISTS _decls)
    string(REGEX MATCH "qtl_[a-z0-9_]+\\($" _n "${_d}")
    string(REGEX REPLACE "\\($" "" _n "${_n}")
    if(NOT _n MATCHES "^qtl_(fixture|dist)_")
      list(APPEND _want ${_n})
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _want)
  list(SORT _want)
  execute_process(COMMAND ${NM} -D --defined-only -P ${LIB} OUTPUT_VARIABLE _out RESULT_VARIABLE _rc
                  ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "shared.cmake: ${NM} -D ${LIB} failed: ${_err}")
  endif()
  string(REPLACE "\n" ";" _lines "${_out}")
  set(_have "")
  foreach(_l IN LISTS _lines)
    # "name type value size"; linker-made markers (_init, _fini, _edata, _end, __bss_start) are not ours
    if(_l MATCHES "^([^ ]+) ([A-Za-z])")
      set(_sym ${CMAKE_MATCH_1})
      if(NOT _sym MATCHES "^(_init|_fini|_edata|_end|__bss_start)$")
        list(APPEND _have ${_sym})
      endif()
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _have)
  list(SORT _have)
  set(_extra ${_have})
  list(REMOVE_ITEM _extra ${_want})
  set(_missing ${_want})
  list(REMOVE_ITEM _missing ${_have})
  if(_extra OR _missing)
    message(FATAL_ERROR "libqtl.so must export exactly qtl.h's QTL_API functions (less qtl_fixture_*, qtl_dist_*):\n"
                        "  exported but not declared with QTL_API in qtl.h: ${_extra}\n"
                        "  declared with QTL_API but not exported: ${_missing}")
  endif()
  list(LENGTH _want _n)
  message(STATUS "libqtl.so exports the ${_n} functions of qtl.h")
  return()
endif()

add_library(qtl_shared SHARED ${QTL_OBJECTS})
target_include_directories(qtl_shared PUBLIC ${PROJECT_SOURCE_DIR}/include)
if(OpenMP_C_FOUND)
  target_link_libraries(qtl_shared PRIVATE OpenMP::OpenMP_C)
endif()
target_link_libraries(qtl_shared PRIVATE PkgConfig::JANSSON Threads::Threads m)
# No SONAME version and no symlinks: the wheel holds one file, qtl/libqtl.so, which ctypes opens
# by path. -z defs: every symbol resolved at link time (a missing dependency fails here, not at
# dlopen in Python).
set_target_properties(qtl_shared PROPERTIES OUTPUT_NAME qtl LINKER_LANGUAGE C C_VISIBILITY_PREFIX_HIDDEN ON)
target_link_options(qtl_shared PRIVATE "LINKER:-z,defs")
# No dependency on qtl_check_layers (the static libqtl has it): that check builds every layer,
# the fixture generator's too, and libqtl.so needs only its own objects.
if(CMAKE_NM)
  add_custom_command(TARGET qtl_shared POST_BUILD
    COMMAND ${CMAKE_COMMAND} -DNM=${CMAKE_NM} -DLIB=$<TARGET_FILE:qtl_shared>
            -DHEADER=${PROJECT_SOURCE_DIR}/include/qtl.h -P ${PROJECT_SOURCE_DIR}/cmake/shared.cmake
    COMMENT "Checking that libqtl.so exports exactly the API of qtl.h"
    VERBATIM)
endif()

# scikit-build-core installs only this component (pyproject.toml: install.components) into the
# wheel's platlib, so the library lands next to python/qtl/__init__.py.
install(TARGETS qtl_shared LIBRARY DESTINATION qtl COMPONENT qtl_python)
