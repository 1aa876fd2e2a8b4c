"""The source paper's reference numbers (Xiong et al., Nat. Commun. 15 (2024) 4154,
doi 10.1038/s41467-024-48174-8; DESIGN §4), keyed by our column names and the cycle.

Fig. 4d/e (text values at cycles 1 and 20, fully lithiated). The paper's "Se-MSe" ratio is matched
to the MSe boundary (contact_MSe_Se, MSe -> Se): on the Se boundary it could not be, because
Se -> Se + Se -> MSe <= 100 % while the paper's Se-Se and Se-MSe add up to 137 % (cycle 1) and
164 % (cycle 20). "LCO-MSe" is read the same way.
"""

PAPER = {
    "contact_Se_Se": {1: 0.705, 20: 0.844},
    "contact_MSe_Se": {1: 0.670, 20: 0.795},
    "vm_mean_Se_Pa": {1: 0.099e9, 20: 0.067e9},
    "vm_mean_MSe_Pa": {1: 0.171e9, 20: 0.156e9},
    "contact_LCO_LCO": {1: 0.0384, 20: 0.0384},
    "contact_MSe_LCO": {1: 0.0910, 20: 0.0910},
}

#: other numbers of the paper that a column can be compared with: the LCO control's peak stress
#: "can reach as high as ~3.0 GPa" (Fig. 4, text)
PAPER_EXTRA = {"vm_max_LCO_Pa": {1: 3e9}}
