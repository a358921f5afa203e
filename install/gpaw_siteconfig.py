# GPAW build settings for `make gpaw` (read by GPAW's setup.py through GPAW_CONFIG).
# Serial (no MPI), C++ build, FFTW plane waves, OpenBLAS; libxc comes from GPAW's default
# `libraries = ['xc']`. Needs Debian's libxc-dev libfftw3-dev libopenblas-dev liblapack-dev.
compiler = 'g++'
mpi = False
fftw = True
libraries += ['fftw3', 'openblas']  # noqa: F821 (defined by GPAW's setup.py before this runs)
