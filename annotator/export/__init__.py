"""Ring 2: dataset writers (NIfTI, COCO, nnU-Net, DICOM SEG, MONAI datalist, YOLO) from Volume + LabelMap."""
