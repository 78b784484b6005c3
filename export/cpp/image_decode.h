// PNG (libpng) and JPEG (libjpeg / libjpeg-turbo) decoding into 8-bit pixels, following the rules of the Python
// side: ibit_deploy.data.sources.read_image (16-bit greyscale scaled onto 0..255 as round(v / 257); images over
// MAX_IMAGE_PIXELS refused from their header) and Pillow's conversion to the bundle's mode, as Predictor does with
// image.convert("L" or "RGB"): alpha dropped (not composited), palettes expanded, 1/2/4-bit greyscale scaled onto
// 0..255, RGB -> L with Pillow's ITU-R 601-2 luma in fixed point, L -> RGB by repeating the grey value.
//
// JPEG is decoded with libjpeg's defaults, which are also Pillow's: the accurate integer IDCT (JDCT_ISLOW) and
// fancy (smooth) chroma upsampling, colour JPEGs to RGB. CMYK JPEGs and 16-bit colour PNGs are refused: the Python
// side reads them through conversions of Pillow's own that this runner does not reproduce.
#pragma once

#include <jpeglib.h>
#include <png.h>

#include <csetjmp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runner_common.h"

namespace ibit {

// ibit_deploy.data.sources.MAX_IMAGE_PIXELS: larger images are refused before their pixels are decoded.
constexpr int64_t kMaxImagePixels = 64LL * 1024 * 1024;

// Decoded 8-bit pixels, interleaved (h, w, channels); channels 1 (grey) or 3 (RGB).
struct Image {
    int64_t height = 0, width = 0;
    int channels = 0;
    std::vector<uint8_t> pixels;
};

namespace detail {

inline void check_pixels(int64_t width, int64_t height, const std::string& name) {
    if (width < 1 || height < 1) throw BadInput(name + ": image has no pixels");
    if (width * height > kMaxImagePixels)
        throw BadInput(name + ": " + std::to_string(width) + "x" + std::to_string(height) + " = " +
                       std::to_string(width * height) + " pixels exceeds the limit of " +
                       std::to_string(kMaxImagePixels) + " pixels; downscale it");
}

struct PngSource {
    const std::string* bytes;
    size_t pos;
    char error[256];
};

extern "C" inline void png_read_memory(png_structp png, png_bytep out, png_size_t count) {
    auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
    if (src->pos + count > src->bytes->size()) png_error(png, "file is truncated");
    std::memcpy(out, src->bytes->data() + src->pos, count);
    src->pos += count;
}

extern "C" inline void png_fail(png_structp png, png_const_charp message) {
    auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
    std::snprintf(src->error, sizeof(src->error), "%s", message);
    png_longjmp(png, 1);
}

extern "C" inline void png_warn(png_structp, png_const_charp) {}

// libpng reports errors by longjmp; this frame holds only trivially destructible state across setjmp.
inline bool decode_png_into(Image& image, PngSource& src, const std::string& name) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_warn);
    if (!png) return false;
    png_infop info = png_create_info_struct(png);
    std::vector<png_bytep> rows;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, nullptr);
        return false;
    }
    png_set_read_fn(png, &src, png_read_memory);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);  // our own pixel limit is checked below, before decoding
    png_read_info(png, info);
    const png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    const int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    const bool grey = (type & PNG_COLOR_MASK_COLOR) == 0;
    try {
        check_pixels(width, height, name);
        if (depth == 16 && !grey)
            throw BadInput(name + ": 16-bit colour PNG; the Python side reads it through Pillow's own conversion, "
                           "which this runner does not reproduce: save it as 8-bit");
    } catch (...) {
        png_destroy_read_struct(&png, &info, nullptr);
        throw;
    }
    const bool sixteen = depth == 16;  // greyscale: read 16 bits and scale as read_image does
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (grey && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (sixteen) png_set_swap(png);  // host (little-endian) order
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int channels = png_get_channels(png, info);
    const size_t row_bytes = png_get_rowbytes(png, info);
    std::vector<uint8_t> raw(row_bytes * height);
    rows.resize(height);
    for (png_uint_32 y = 0; y < height; ++y) rows[y] = raw.data() + y * row_bytes;
    png_read_image(png, rows.data());
    png_destroy_read_struct(&png, &info, nullptr);

    image.height = height;
    image.width = width;
    image.channels = channels;
    if (!sixteen) {
        image.pixels = std::move(raw);
        return true;
    }
    image.pixels.resize(static_cast<size_t>(width) * height);
    for (size_t i = 0; i < image.pixels.size(); ++i) {
        uint16_t v;
        std::memcpy(&v, raw.data() + 2 * i, 2);
        image.pixels[i] = static_cast<uint8_t>((v + 128u) / 257u);  // round(v / 257): no ties for integers
    }
    return true;
}

struct JpegError {
    jpeg_error_mgr mgr;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

extern "C" inline void jpeg_fail(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    cinfo->err->format_message(cinfo, err->message);
    std::longjmp(err->jump, 1);
}

extern "C" inline void jpeg_quiet(j_common_ptr, int) {}

inline bool decode_jpeg_into(const std::string& bytes, Image& image, JpegError& err, const std::string& name) {
    jpeg_decompress_struct cinfo;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_fail;
    err.mgr.emit_message = jpeg_quiet;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return false;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        throw BadInput(name + ": CMYK JPEG; the Python side converts it with Pillow's own CMYK formula, which this "
                       "runner does not reproduce: save it as RGB or greyscale");
    }
    try {
        check_pixels(cinfo.image_width, cinfo.image_height, name);
    } catch (...) {
        jpeg_destroy_decompress(&cinfo);
        throw;
    }
    cinfo.out_color_space = cinfo.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);
    image.width = cinfo.output_width;
    image.height = cinfo.output_height;
    image.channels = cinfo.output_components;
    const size_t stride = static_cast<size_t>(image.width) * static_cast<size_t>(image.channels);
    image.pixels.resize(stride * static_cast<size_t>(image.height));
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = image.pixels.data() + cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return true;
}

}  // namespace detail

// Decode a PNG or JPEG held in `bytes` (recognised by its signature); BadInput naming `name` on anything else.
inline Image decode_image(const std::string& bytes, const std::string& name) {
    Image image;
    if (bytes.size() >= 8 && png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) == 0) {
        detail::PngSource src{&bytes, 0, {0}};
        if (!detail::decode_png_into(image, src, name))
            throw BadInput(name + " is not a readable PNG: " + std::string(src.error));
        return image;
    }
    if (bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
        static_cast<unsigned char>(bytes[1]) == 0xD8 && static_cast<unsigned char>(bytes[2]) == 0xFF) {
        detail::JpegError err{};
        if (!detail::decode_jpeg_into(bytes, image, err, name))
            throw BadInput(name + " is not a readable JPEG: " + std::string(err.message));
        return image;
    }
    throw BadInput(name + ": not a PNG or JPEG file (expected a PNG or JPEG image, or a float32 .npy tensor)");
}

// `image` in the bundle's channel order: "L" (Pillow's convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16),
// "RGB" (grey repeated) or "BGR" (RGB reversed).
inline Image to_channel_order(Image image, const std::string& order) {
    const size_t n = static_cast<size_t>(image.height * image.width);
    if (order == "L" && image.channels == 3) {
        std::vector<uint8_t> grey(n);
        for (size_t i = 0; i < n; ++i) {
            const uint8_t* p = image.pixels.data() + 3 * i;
            grey[i] = static_cast<uint8_t>((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16);
        }
        image.pixels = std::move(grey);
        image.channels = 1;
    } else if (order != "L" && image.channels == 1) {
        std::vector<uint8_t> rgb(3 * n);
        for (size_t i = 0; i < n; ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = image.pixels[i];
        image.pixels = std::move(rgb);
        image.channels = 3;
    }
    if (order == "BGR")
        for (size_t i = 0; i < n; ++i) std::swap(image.pixels[3 * i], image.pixels[3 * i + 2]);
    return image;
}

}  // namespace ibit
