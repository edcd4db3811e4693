# Which Python the package is built for, and whether it can be.
#
# LOCKSTEP_PYTHON names the interpreter; by default the first of
# $LOCKSTEP_PYTHON, /usr/bin/python3 and python3 on PATH that imports torch
# (Debian's torch is importable from /usr/bin/python3 only; on the GPU
# machines torch lives in the python3 on PATH), else the first that exists.
# The package is built when that interpreter's headers and pybind11 are
# found; otherwise LOCKSTEP_BUILD_PYTHON is OFF and the reason printed.
set(candidates)
if(DEFINED ENV{LOCKSTEP_PYTHON})
  list(APPEND candidates $ENV{LOCKSTEP_PYTHON})
endif()
find_program(path_python3 NAMES python3 NO_CACHE)
list(APPEND candidates /usr/bin/python3 ${path_python3})

if(NOT LOCKSTEP_PYTHON)
  foreach(candidate IN LISTS candidates)
    if(EXISTS ${candidate})
      execute_process(COMMAND ${candidate} -c "import torch" RESULT_VARIABLE no_torch
        OUTPUT_QUIET ERROR_QUIET TIMEOUT 120)
      if(no_torch EQUAL 0)
        set(LOCKSTEP_PYTHON ${candidate})
        break()
      endif()
    endif()
  endforeach()
  if(NOT LOCKSTEP_PYTHON)
    foreach(candidate IN LISTS candidates)
      if(EXISTS ${candidate})
        set(LOCKSTEP_PYTHON ${candidate})
        break()
      endif()
    endforeach()
  endif()
  set(LOCKSTEP_PYTHON ${LOCKSTEP_PYTHON} CACHE FILEPATH "Interpreter the lockstep Python package is built for")
endif()

set(LOCKSTEP_BUILD_PYTHON OFF)
if(LOCKSTEP_PYTHON)
  set(Python3_EXECUTABLE ${LOCKSTEP_PYTHON})
  find_package(Python3 COMPONENTS Interpreter Development.Module)
  execute_process(COMMAND ${LOCKSTEP_PYTHON} -m pybind11 --cmakedir OUTPUT_VARIABLE pip_pybind11_dir
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  find_package(pybind11 CONFIG HINTS ${pip_pybind11_dir})
  if(Python3_Development.Module_FOUND AND pybind11_FOUND)
    set(LOCKSTEP_BUILD_PYTHON ON)
    execute_process(COMMAND ${LOCKSTEP_PYTHON} -c "import torch" RESULT_VARIABLE no_torch
      OUTPUT_QUIET ERROR_QUIET TIMEOUT 120)
    if(no_torch EQUAL 0)
      set(LOCKSTEP_PYTHON_HAS_TORCH ON)
    else()
      set(LOCKSTEP_PYTHON_HAS_TORCH OFF)
    endif()
    message(STATUS "lockstep: Python package for ${LOCKSTEP_PYTHON} (torch: ${LOCKSTEP_PYTHON_HAS_TORCH})")
  else()
    message(STATUS "lockstep: no Python package (${LOCKSTEP_PYTHON}: headers ${Python3_Development.Module_FOUND}, "
                   "pybind11 ${pybind11_FOUND}); scripts/setup.sh installs both")
  endif()
endif()
