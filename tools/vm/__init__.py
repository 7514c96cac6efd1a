"""QEMU virtual machines that boot Debian kernels and run a command of the test suite."""
