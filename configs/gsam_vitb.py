# Grounded-SAM with SAM ViT-B: the same recipe as gsam_vith.py with the
# smaller SAM image encoder (90M parameters instead of 637M).
_base_ = './gsam_vith.py'

sam_backbone = 'vit_b'
sam_checkpoint = 'checkpoints/sam_vit_b_01ec64.pth'

model = dict(sam=dict(backbone=sam_backbone, checkpoint=sam_checkpoint))
