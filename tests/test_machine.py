"""The machine facts a run's report names."""

from skfer.machine import describe_machine, machine_line, processor_name


def test_the_processor_is_named_with_its_widest_vector_units(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse avx2 avx512f amx_bf16\n"
        "\nprocessor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse avx2 avx512f\n"
    )
    assert processor_name(cpuinfo) == "Example CPU 9000 (amx_bf16, avx512f, avx2)"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Plain CPU\nflags\t\t: fpu sse\n")
    assert processor_name(cpuinfo) == "Plain CPU"


def test_without_cpuinfo_the_processor_still_has_a_name(tmp_path):
    assert processor_name(tmp_path / "absent")


def test_the_machine_line_holds_every_fact():
    machine = describe_machine()
    assert set(machine) == {"processor", "cores", "system", "python", "skfer", "keras", "backend"}
    line = machine_line(machine)
    assert machine["processor"] in line and f"Keras {machine['keras']}" in line
