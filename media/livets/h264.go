package livets

import (
	"bytes"
	"errors"
	"fmt"
)

// The H.264 subset written here: Constrained Baseline, every picture an IDR
// whose macroblocks are all I_PCM (ITU-T H.264 7.3.5: mb_type 25 in an I
// slice, samples stored raw), CAVLC, one slice per picture, 4:2:0. Any
// decoder decodes it; no encoder is needed to make it.

const mbTypeIPCM = 25 // ITU-T H.264 Table 7-11

type bitWriter struct {
	buf  []byte
	cur  byte
	nbit int
}

func (w *bitWriter) bit(b uint32) {
	w.cur = w.cur<<1 | byte(b&1)
	w.nbit++
	if w.nbit == 8 {
		w.buf = append(w.buf, w.cur)
		w.cur, w.nbit = 0, 0
	}
}

func (w *bitWriter) bits(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		w.bit(v >> uint(i))
	}
}

// ue writes Exp-Golomb ue(v) (H.264 9.1).
func (w *bitWriter) ue(v uint32) {
	x := v + 1
	n := 0
	for t := x; t > 1; t >>= 1 {
		n++
	}
	w.bits(0, n)
	w.bits(x, n+1)
}

func (w *bitWriter) se(v int32) {
	if v <= 0 {
		w.ue(uint32(-2 * v))
	} else {
		w.ue(uint32(2*v - 1))
	}
}

func (w *bitWriter) aligned() bool { return w.nbit == 0 }

func (w *bitWriter) alignZero() {
	for w.nbit != 0 {
		w.bit(0)
	}
}

// trailing writes rbsp_trailing_bits.
func (w *bitWriter) trailing() []byte {
	w.bit(1)
	w.alignZero()
	return w.buf
}

var errBits = errors.New("livets: bitstream ends early")

type bitReader struct {
	buf []byte
	pos int // in bits
}

func (r *bitReader) bit() (uint32, error) {
	if r.pos >= 8*len(r.buf) {
		return 0, errBits
	}
	b := r.buf[r.pos/8] >> (7 - uint(r.pos%8)) & 1
	r.pos++
	return uint32(b), nil
}

func (r *bitReader) bits(n int) (uint32, error) {
	var v uint32
	for i := 0; i < n; i++ {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		v = v<<1 | b
	}
	return v, nil
}

func (r *bitReader) ue() (uint32, error) {
	zeros := 0
	for {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		if b == 1 {
			break
		}
		zeros++
		if zeros > 31 {
			return 0, errors.New("livets: Exp-Golomb code too long")
		}
	}
	v, err := r.bits(zeros)
	if err != nil {
		return 0, err
	}
	return (1<<uint(zeros) - 1) + v, nil
}

func (r *bitReader) se() (int32, error) {
	v, err := r.ue()
	if err != nil {
		return 0, err
	}
	if v&1 == 1 {
		return int32((v + 1) / 2), nil
	}
	return -int32(v / 2), nil
}

func (r *bitReader) align() {
	r.pos = (r.pos + 7) &^ 7
}

// escape adds emulation prevention bytes (H.264 7.4.1): no 00 00 0x (x ≤ 3)
// inside a NAL unit. Runs between zero pairs are copied whole: I_PCM
// payloads are mostly non-zero, and this runs on every live segment.
func escape(rbsp []byte) []byte {
	out := make([]byte, 0, len(rbsp)+len(rbsp)/64+4)
	for {
		i := bytes.Index(rbsp, zeroPair)
		if i < 0 || i+2 >= len(rbsp) {
			return append(out, rbsp...)
		}
		out = append(out, rbsp[:i+2]...)
		rbsp = rbsp[i+2:]
		if rbsp[0] <= 3 {
			out = append(out, 3)
		}
	}
}

var zeroPair = []byte{0, 0}

// unescape removes emulation prevention bytes.
func unescape(nal []byte) []byte {
	out := make([]byte, 0, len(nal))
	for {
		i := bytes.Index(nal, escapeSeq)
		if i < 0 {
			return append(out, nal...)
		}
		out = append(out, nal[:i+2]...)
		nal = nal[i+3:]
	}
}

var escapeSeq = []byte{0, 0, 3}

func nal(refIdc, typ byte, rbsp []byte) []byte {
	out := []byte{0, 0, 0, 1, refIdc<<5 | typ}
	return append(out, escape(rbsp)...)
}

// sps writes the sequence parameter set (H.264 7.3.2.1.1) with VUI timing
// so decoders report the frame rate.
func sps(f Format) []byte {
	var w bitWriter
	w.bits(66, 8)   // profile_idc: Baseline
	w.bits(0xC0, 8) // constraint_set0+1: Constrained Baseline
	w.bits(40, 8)   // level_idc 4.0 (I_PCM's bit rate is above lower levels')
	w.ue(0)         // seq_parameter_set_id
	w.ue(0)         // log2_max_frame_num_minus4
	w.ue(2)         // pic_order_cnt_type 2: output order = decode order
	w.ue(1)         // max_num_ref_frames
	w.bit(0)        // gaps_in_frame_num_value_allowed_flag
	w.ue(uint32(f.Width/16 - 1))
	w.ue(uint32(f.Height/16 - 1))
	w.bit(1) // frame_mbs_only_flag
	w.bit(1) // direct_8x8_inference_flag
	w.bit(0) // frame_cropping_flag
	w.bit(1) // vui_parameters_present_flag
	w.bit(0) // aspect_ratio_info_present_flag
	w.bit(0) // overscan_info_present_flag
	w.bit(0) // video_signal_type_present_flag
	w.bit(0) // chroma_loc_info_present_flag
	w.bit(1) // timing_info_present_flag
	w.bits(1, 32)
	w.bits(uint32(2*f.FPS), 32) // time_scale: two ticks per frame (E.2.1)
	w.bit(1)                    // fixed_frame_rate_flag
	w.bit(0)                    // nal_hrd_parameters_present_flag
	w.bit(0)                    // vcl_hrd_parameters_present_flag
	w.bit(0)                    // pic_struct_present_flag
	w.bit(0)                    // bitstream_restriction_flag
	return nal(3, 7, w.trailing())
}

// pps writes the picture parameter set (H.264 7.3.2.2).
func pps() []byte {
	var w bitWriter
	w.ue(0)  // pic_parameter_set_id
	w.ue(0)  // seq_parameter_set_id
	w.bit(0) // entropy_coding_mode_flag: CAVLC
	w.bit(0) // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)  // num_slice_groups_minus1
	w.ue(0)  // num_ref_idx_l0_default_active_minus1
	w.ue(0)  // num_ref_idx_l1_default_active_minus1
	w.bit(0) // weighted_pred_flag
	w.bits(0, 2)
	w.se(0)  // pic_init_qp_minus26
	w.se(0)  // pic_init_qs_minus26
	w.se(0)  // chroma_qp_index_offset
	w.bit(1) // deblocking_filter_control_present_flag
	w.bit(0) // constrained_intra_pred_flag
	w.bit(0) // redundant_pic_cnt_present_flag
	return nal(3, 8, w.trailing())
}

// aud is an access unit delimiter (H.264 7.3.2.4), primary_pic_type 0 (I).
func aud() []byte { return []byte{0, 0, 0, 1, 9, 0x10} }

// idrSlice writes one IDR picture of I_PCM macroblocks (H.264 7.3.3, 7.3.4,
// 7.3.5). idrPicID must differ between consecutive IDR pictures.
func idrSlice(p *Picture, idrPicID uint32) []byte {
	var w bitWriter
	w.buf = make([]byte, 0, p.Width*p.Height*3/2+p.Width*p.Height/256*2+16)
	w.ue(0)      // first_mb_in_slice
	w.ue(7)      // slice_type: I, all slices of the picture
	w.ue(0)      // pic_parameter_set_id
	w.bits(0, 4) // frame_num
	w.ue(idrPicID)
	w.bit(0) // no_output_of_prior_pics_flag
	w.bit(0) // long_term_reference_flag
	w.se(0)  // slice_qp_delta
	w.ue(1)  // disable_deblocking_filter_idc: off
	mbw, mbh := p.Width/16, p.Height/16
	for my := 0; my < mbh; my++ {
		for mx := 0; mx < mbw; mx++ {
			w.ue(mbTypeIPCM)
			w.alignZero()
			for y := 0; y < 16; y++ {
				row := (my*16+y)*p.Width + mx*16
				w.buf = append(w.buf, p.Y[row:row+16]...)
			}
			for _, plane := range [][]byte{p.Cb, p.Cr} {
				for y := 0; y < 8; y++ {
					row := (my*8+y)*(p.Width/2) + mx*8
					w.buf = append(w.buf, plane[row:row+8]...)
				}
			}
		}
	}
	return nal(3, 5, w.trailing())
}

// seqParams is what the decoder needs of an SPS and PPS.
type seqParams struct {
	width, height      int
	log2MaxFrameNum    int
	pocType            int
	log2MaxPocLsb      int
	deblockingPresent  bool
	bottomFieldPresent bool
	redundantPresent   bool
	havePPS            bool
}

// maxMacroblocks bounds the picture a hostile SPS can declare (1920×1088).
const maxMacroblocks = 120 * 68

func parseSPS(rbsp []byte, sp *seqParams) error {
	r := bitReader{buf: rbsp}
	profile, err := r.bits(8)
	if err != nil {
		return err
	}
	if _, err := r.bits(16); err != nil {
		return err
	}
	if _, err := r.ue(); err != nil {
		return err
	}
	switch profile {
	case 66, 77, 88:
	default:
		return fmt.Errorf("livets: H.264 profile %d is not one this reader decodes", profile)
	}
	v, err := r.ue()
	if err != nil || v > 12 {
		return fmt.Errorf("livets: bad log2_max_frame_num: %v", err)
	}
	sp.log2MaxFrameNum = int(v) + 4
	v, err = r.ue()
	if err != nil {
		return err
	}
	sp.pocType = int(v)
	switch sp.pocType {
	case 0:
		v, err = r.ue()
		if err != nil || v > 12 {
			return fmt.Errorf("livets: bad log2_max_pic_order_cnt_lsb: %v", err)
		}
		sp.log2MaxPocLsb = int(v) + 4
	case 2:
	default:
		return fmt.Errorf("livets: pic_order_cnt_type %d is not one this reader decodes", sp.pocType)
	}
	if _, err := r.ue(); err != nil { // max_num_ref_frames
		return err
	}
	if _, err := r.bit(); err != nil {
		return err
	}
	wmb, err := r.ue()
	if err != nil {
		return err
	}
	hmb, err := r.ue()
	if err != nil {
		return err
	}
	frameOnly, err := r.bit()
	if err != nil {
		return err
	}
	if frameOnly != 1 {
		return errors.New("livets: interlaced H.264 is not decoded here")
	}
	if (uint64(wmb)+1)*(uint64(hmb)+1) > maxMacroblocks {
		return fmt.Errorf("livets: picture of %d×%d macroblocks is over the %d bound", wmb+1, hmb+1, maxMacroblocks)
	}
	sp.width, sp.height = int(wmb+1)*16, int(hmb+1)*16
	return nil
}

func parsePPS(rbsp []byte, sp *seqParams) error {
	r := bitReader{buf: rbsp}
	if _, err := r.ue(); err != nil {
		return err
	}
	if _, err := r.ue(); err != nil {
		return err
	}
	cabac, err := r.bit()
	if err != nil {
		return err
	}
	if cabac != 0 {
		return errors.New("livets: CABAC is not decoded here")
	}
	b, err := r.bit()
	if err != nil {
		return err
	}
	sp.bottomFieldPresent = b == 1
	groups, err := r.ue()
	if err != nil {
		return err
	}
	if groups != 0 {
		return errors.New("livets: slice groups are not decoded here")
	}
	for i := 0; i < 2; i++ {
		if _, err := r.ue(); err != nil {
			return err
		}
	}
	if _, err := r.bits(3); err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		if _, err := r.se(); err != nil {
			return err
		}
	}
	flags, err := r.bits(3)
	if err != nil {
		return err
	}
	sp.deblockingPresent = flags&4 != 0
	sp.redundantPresent = flags&1 != 0
	sp.havePPS = true
	return nil
}

// decodeSlice reads an I slice of I_PCM macroblocks into a Picture.
func decodeSlice(nalType byte, refIdc byte, rbsp []byte, sp *seqParams) (*Picture, error) {
	if sp.width == 0 || !sp.havePPS {
		return nil, errors.New("livets: slice before SPS/PPS")
	}
	r := bitReader{buf: rbsp}
	first, err := r.ue()
	if err != nil {
		return nil, err
	}
	if first != 0 {
		return nil, errors.New("livets: pictures of several slices are not decoded here")
	}
	st, err := r.ue()
	if err != nil {
		return nil, err
	}
	if st != 2 && st != 7 {
		return nil, fmt.Errorf("livets: slice type %d is not intra", st)
	}
	if _, err := r.ue(); err != nil {
		return nil, err
	}
	if _, err := r.bits(sp.log2MaxFrameNum); err != nil {
		return nil, err
	}
	if nalType == 5 {
		if _, err := r.ue(); err != nil {
			return nil, err
		}
	}
	if sp.pocType == 0 {
		if _, err := r.bits(sp.log2MaxPocLsb); err != nil {
			return nil, err
		}
		if sp.bottomFieldPresent {
			if _, err := r.se(); err != nil {
				return nil, err
			}
		}
	}
	if sp.redundantPresent {
		if _, err := r.ue(); err != nil {
			return nil, err
		}
	}
	if refIdc != 0 {
		if nalType == 5 {
			if _, err := r.bits(2); err != nil {
				return nil, err
			}
		} else {
			adaptive, err := r.bit()
			if err != nil {
				return nil, err
			}
			if adaptive == 1 {
				return nil, errors.New("livets: memory management operations are not decoded here")
			}
		}
	}
	if _, err := r.se(); err != nil { // slice_qp_delta
		return nil, err
	}
	if sp.deblockingPresent {
		idc, err := r.ue()
		if err != nil {
			return nil, err
		}
		if idc != 1 {
			if _, err := r.se(); err != nil {
				return nil, err
			}
			if _, err := r.se(); err != nil {
				return nil, err
			}
		}
	}
	p := newPicture(sp.width, sp.height)
	mbw, mbh := sp.width/16, sp.height/16
	for my := 0; my < mbh; my++ {
		for mx := 0; mx < mbw; mx++ {
			t, err := r.ue()
			if err != nil {
				return nil, err
			}
			if t != mbTypeIPCM {
				return nil, fmt.Errorf("livets: macroblock type %d is not I_PCM", t)
			}
			r.align()
			at := r.pos / 8
			if at+384 > len(rbsp) {
				return nil, errBits
			}
			mb := rbsp[at : at+384]
			for y := 0; y < 16; y++ {
				copy(p.Y[(my*16+y)*p.Width+mx*16:], mb[16*y:16*y+16])
			}
			for y := 0; y < 8; y++ {
				copy(p.Cb[(my*8+y)*(p.Width/2)+mx*8:], mb[256+8*y:256+8*y+8])
				copy(p.Cr[(my*8+y)*(p.Width/2)+mx*8:], mb[320+8*y:320+8*y+8])
			}
			r.pos += 384 * 8
		}
	}
	return p, nil
}
