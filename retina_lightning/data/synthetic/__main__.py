"""``python -m retina_lightning.data.synthetic [DRIVE folder]``: write the preview sheet
(:func:`~retina_lightning.data.synthetic.dataset._preview`)."""

import sys

from retina_lightning.data.synthetic.dataset import _preview

if __name__ == "__main__":
    print(_preview(drive_root=sys.argv[1] if len(sys.argv) > 1 else None))
