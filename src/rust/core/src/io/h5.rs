//! Reading and writing the HDF5 files (through the hdf5-metno crate on the system libhdf5).
use super::config::{model_config, model_from_config, training_config, TrainingConfig, KERAS_VERSION};
use super::{injected_write_failure, write_atomically};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::shape::join_dims;
use crate::tensor::HostTensor;
use crate::train::Compiled;
use hdf5::types::{TypeDescriptor, VarLenUnicode};
use hdf5::{File, Group, Location};
use std::path::Path;
use std::str::FromStr;

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> Error + '_ {
    move |e| Error::Io(format!("HDF5 error on \"{}\": {}", path.display(), e))
}

fn vlen(s: &str) -> Result<VarLenUnicode> {
    VarLenUnicode::from_str(s).map_err(|e| Error::Io(format!("cannot store \"{}\" in HDF5: {}", s, e)))
}

fn write_str_attr(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v = VarLenUnicode::from_str(value).map_err(|e| hdf5::Error::from(e.to_string().as_str()))?;
    loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&v)
}

fn write_str_list_attr(loc: &Location, name: &str, values: &[String]) -> Result<()> {
    if values.is_empty() {
        // Keras (via h5py) stores an empty name list as an empty float64 array.
        loc.new_attr::<f64>().shape(0).create(name).and_then(|a| a.write_raw(&[] as &[f64])).map_err(|e| Error::Io(e.to_string()))?;
        return Ok(());
    }
    let v = values.iter().map(|s| vlen(s)).collect::<Result<Vec<_>>>()?;
    let write = |attr_name: &str, part: &[VarLenUnicode]| {
        loc.new_attr::<VarLenUnicode>().shape(part.len()).create(attr_name).and_then(|a| a.write_raw(part)).map_err(|e| Error::Io(e.to_string()))
    };
    if v.len() <= ATTRIBUTE_CHUNK {
        return write(name, &v);
    }
    // As Keras: a list too long for one object header goes in chunks `name0`, `name1`, ...
    v.chunks(ATTRIBUTE_CHUNK).enumerate().try_for_each(|(i, part)| write(&format!("{}{}", name, i), part))
}

/// Names per attribute: an HDF5 object header holds at most 64 KiB (Keras's
/// HDF5_OBJECT_HEADER_LIMIT of 64512 bytes), and each variable-length string takes 16 bytes
/// of it; longer lists are written in chunks, as Keras does.
const ATTRIBUTE_CHUNK: usize = 4000;

/// Text from a string a file holds. HDF5 hands back bytes; the hdf5 crate's `as_str()` takes
/// them as UTF-8 unchecked, and a corrupted file's bytes then crashed R when formatted (found
/// by `examples/h5_fuzz.rs`): checked here.
fn text(bytes: &[u8], what: &str) -> Result<String> {
    std::str::from_utf8(bytes).map(str::to_string).map_err(|_| Error::Io(format!("{} is not valid UTF-8 text: the file is corrupt", what)))
}

/// The length of the file behind `loc`, the bound for any size the file declares.
fn file_len(loc: &Location) -> u64 {
    std::fs::metadata(loc.filename()).map(|m| m.len()).unwrap_or(u64::MAX)
}

/// Checks the size an attribute or a dataset declares before anything is read: values stored
/// in a file cannot take more bytes than the file has, and an uncompressed dataset stores
/// exactly its declared bytes. A corrupted count otherwise had libhdf5 allocate and zero
/// gigabytes (minutes of 100% CPU that Ctrl-C could not stop; examples/h5_fuzz.rs).
fn check_declared_size(c: &hdf5::Container, what: &str, file_len: u64, is_dataset: bool) -> Result<()> {
    let corrupt = |detail: String| Error::Io(format!("{} {}: the file is corrupt", what, detail));
    let space = c.space().map_err(|e| Error::Io(format!("{}: cannot read its shape ({})", what, e)))?;
    let count = crate::memory::elements(&space.shape()).ok_or_else(|| corrupt("declares more values than can be counted".into()))?;
    let item = c.dtype().map(|t| t.size()).map_err(|e| Error::Io(format!("{}: cannot read its type ({})", what, e)))?;
    let declared = count.checked_mul(item as u64).ok_or_else(|| corrupt("declares more bytes than can be counted".into()))?;
    let stored = if is_dataset { c.storage_size() } else { declared };
    if stored > file_len {
        return Err(corrupt(format!("declares {} bytes of data in a file of {} bytes", stored, file_len)));
    }
    if is_dataset {
        let ds = c.as_dataset().map_err(|e| Error::Io(e.to_string()))?;
        if ds.filters().is_empty() && stored != declared {
            return Err(corrupt(format!("declares {} values ({} bytes) but stores {} bytes", count, declared, stored)));
        }
    }
    Ok(())
}

fn read_str_list_attr(loc: &Location, name: &str, what: &str) -> Result<Vec<String>> {
    if loc.attr(name).is_err() && loc.attr(&format!("{}0", name)).is_ok() {
        // Keras's chunked form (`name0`, `name1`, ...) of a long list; bounded by the
        // attributes the object has.
        let count = loc.attr_names().map(|n| n.len()).unwrap_or(0);
        let mut all = Vec::new();
        for i in 0..count {
            let part = format!("{}{}", name, i);
            if loc.attr(&part).is_err() {
                break;
            }
            all.extend(read_str_list_attr(loc, &part, what)?);
        }
        return Ok(all);
    }
    let attr = loc.attr(name).map_err(|_| Error::Io(format!("{} has no `{}` attribute: not a Keras HDF5 file?", what, name)))?;
    let label = format!("{}'s `{}` attribute", what, name);
    check_declared_size(&attr, &label, file_len(loc), false)?;
    let descriptor = attr.dtype().and_then(|t| t.to_descriptor()).map_err(|e| Error::Io(e.to_string()))?;
    match descriptor {
        TypeDescriptor::VarLenUnicode => {
            attr.read_raw::<VarLenUnicode>().map_err(|e| Error::Io(e.to_string()))?.iter().map(|s| text(s.as_bytes(), &label)).collect()
        }
        TypeDescriptor::VarLenAscii => {
            attr.read_raw::<hdf5::types::VarLenAscii>().map_err(|e| Error::Io(e.to_string()))?.iter().map(|s| text(s.as_bytes(), &label)).collect()
        }
        // An empty list (h5py writes float64 for it).
        TypeDescriptor::Float(_) if attr.size() == 0 => Ok(Vec::new()),
        other => Err(Error::Io(format!("{} has an unsupported string type ({:?})", label, other))),
    }
}

fn read_str_attr(loc: &Location, name: &str) -> Result<Option<String>> {
    let Ok(attr) = loc.attr(name) else { return Ok(None) };
    let label = format!("attribute `{}`", name);
    check_declared_size(&attr, &label, file_len(loc), false)?;
    let descriptor = attr.dtype().and_then(|t| t.to_descriptor()).map_err(|e| Error::Io(e.to_string()))?;
    Ok(Some(match descriptor {
        TypeDescriptor::VarLenUnicode => text(attr.read_scalar::<VarLenUnicode>().map_err(|e| Error::Io(e.to_string()))?.as_bytes(), &label)?,
        TypeDescriptor::VarLenAscii => text(attr.read_scalar::<hdf5::types::VarLenAscii>().map_err(|e| Error::Io(e.to_string()))?.as_bytes(), &label)?,
        other => return Err(Error::Io(format!("{} has an unsupported type ({:?})", label, other))),
    }))
}

/// Layers with their weights, in model order: (layer name, [(weight name, value)]).
type LayerWeights = Vec<(String, Vec<(String, HostTensor)>)>;

fn layer_weights(model: &Model) -> LayerWeights {
    let values = model.get_weights();
    model
        .arch
        .layers
        .iter()
        .zip(&model.arch.weight_ranges)
        .map(|(l, r)| (l.name.clone(), r.clone().map(|i| (model.weights[i].name.clone(), values[i].clone())).collect()))
        .collect()
}

fn write_dataset(group: &Group, name: &str, t: &HostTensor) -> Result<()> {
    group
        .new_dataset::<f32>()
        .shape(t.shape.clone())
        .create(name)
        .and_then(|d| d.write_raw(&t.data))
        .map_err(|e| Error::Io(format!("cannot write weight \"{}\": {}", name, e)))
}

/// Keras's `save_weights_to_hdf5_group`: root attributes, a group per layer with
/// `weight_names`, datasets at `<layer>/<weight name>`.
fn write_weights_group(group: &Group, layers: &LayerWeights) -> Result<()> {
    let names: Vec<String> = layers.iter().map(|(n, _)| n.clone()).collect();
    write_str_list_attr(group, "layer_names", &names)?;
    write_str_attr(group, "backend", "tensorflow").map_err(|e| Error::Io(e.to_string()))?;
    write_str_attr(group, "keras_version", KERAS_VERSION).map_err(|e| Error::Io(e.to_string()))?;
    for (i, (layer, weights)) in layers.iter().enumerate() {
        let g = group.create_group(layer).map_err(|e| Error::Io(e.to_string()))?;
        let weight_names: Vec<String> = weights.iter().map(|(n, _)| n.clone()).collect();
        write_str_list_attr(&g, "weight_names", &weight_names)?;
        for (name, value) in weights {
            // "dense/kernel:0" lives at <layer group>/dense/kernel:0.
            let (sub, leaf) = name.rsplit_once('/').unwrap_or(("", name.as_str()));
            // A recurrent cell's "lstm/lstm_cell/kernel:0" nests two groups: made one by one.
            let mut target = g.clone();
            for part in sub.split('/').filter(|p| !p.is_empty()) {
                target = if target.link_exists(part) { target.group(part) } else { target.create_group(part) }.map_err(|e| Error::Io(e.to_string()))?;
            }
            write_dataset(&target, leaf, value)?;
        }
        if i == 0 {
            injected_write_failure()?;
        }
    }
    Ok(())
}

/// `save_model_weights_hdf5()`.
pub fn save_weights(path: &Path, model: &Model, overwrite: bool) -> Result<()> {
    require_built(model, "saving")?;
    let layers = layer_weights(model);
    write_atomically(path, overwrite, |tmp| {
        let file = File::create(tmp).map_err(h5err(tmp))?;
        write_weights_group(&file, &layers)?;
        file.close().map_err(h5err(tmp))
    })
}

fn require_built(model: &Model, doing: &str) -> Result<()> {
    if model.arch.is_built() {
        Ok(())
    } else {
        Err(Error::State(format!("the model is not built yet: give the first layer an `input_shape`, or fit/predict once, before {}", doing)))
    }
}

fn open(path: &Path) -> Result<File> {
    super::check_readable_file(path)?;
    super::h5_precheck::check(path)?;
    File::open(path).map_err(|e| Error::Io(format!("\"{}\" is not a readable HDF5 file ({})", path.display(), e)))
}

fn read_dataset(group: &Group, path: &str) -> Result<HostTensor> {
    let ds = group.dataset(path).map_err(|e| {
        if group.link_exists(path) {
            Error::Io(format!("weight \"{}\" cannot be read ({}): the file is corrupt", path, e))
        } else {
            Error::Io(format!("weight \"{}\" is missing from the file", path))
        }
    })?;
    crate::cancel::check()?;
    check_declared_size(&ds, &format!("weight \"{}\"", path), file_len(group), true)?;
    // The shape comes from the file: checked before reading.
    crate::memory::check(
        &format!("weight \"{}\" of shape ({})", path, crate::shape::join_dims(&ds.shape())),
        crate::memory::elements(&ds.shape()).and_then(|n| crate::memory::bytes(n, 4)),
        "the file declares a weight larger than this machine's memory (is it corrupt?)",
    )?;
    let mut data = crate::memory::filled(ds.size(), 0f32, &format!("weight \"{}\"", path))?;
    ds.read_into_raw(&mut data).map_err(|e| Error::Io(format!("cannot read weight \"{}\": {}", path, e)))?;
    HostTensor::new(ds.shape(), data)
}

/// The saved layers with weights, from a legacy (`layer_names`) group or a Keras 3
/// `.weights.h5` (`layers/<name>/vars/<i>`) file.
fn read_saved_layers(file: &File, group: &Group, what: &str) -> Result<LayerWeights> {
    if group.attr("layer_names").is_err() && file.link_exists("layers") {
        return read_keras3_layers(file);
    }
    let names = read_str_list_attr(group, "layer_names", what)?;
    let mut out = Vec::new();
    for name in names {
        let g = group.group(&name).map_err(|_| Error::Io(format!("{} lists layer \"{}\" but has no group for it", what, name)))?;
        let weight_names = read_str_list_attr(&g, "weight_names", &format!("layer \"{}\"", name))?;
        let mut weights = Vec::new();
        for w in weight_names {
            let value = read_dataset(&g, &w)?;
            weights.push((w, value));
        }
        out.push((name, weights));
    }
    Ok(out)
}

/// "dense_12" -> ("dense", 12): HDF5 lists groups alphabetically, Keras numbers layers.
fn natural_key(name: &str) -> (String, u64) {
    match name.rsplit_once('_') {
        Some((stem, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => (stem.to_string(), n.parse().unwrap_or(0)),
        _ => (name.to_string(), 0),
    }
}

fn read_keras3_layers(file: &File) -> Result<LayerWeights> {
    let layers = file.group("layers").map_err(|e| Error::Io(e.to_string()))?;
    let mut names = layers.member_names().map_err(|e| Error::Io(e.to_string()))?;
    names.sort_by_key(|n| natural_key(n));
    let mut out = Vec::new();
    for name in names {
        let g = layers.group(&name).map_err(|e| Error::Io(e.to_string()))?;
        let mut weights = Vec::new();
        if g.link_exists("vars") {
            let vars = g.group("vars").map_err(|e| Error::Io(e.to_string()))?;
            let mut i = 0;
            while vars.link_exists(&i.to_string()) {
                weights.push((format!("{}/{}", name, i), read_dataset(&vars, &i.to_string())?));
                i += 1;
            }
        }
        out.push((name, weights));
    }
    Ok(out)
}

/// Assigns saved layers to the model's layers with weights, in order or by name (Keras's
/// A layer's weights as a file holds them: the layer name and (weight name, value) pairs.
type SavedLayer = (String, Vec<(String, HostTensor)>);

/// rules), checking counts and shapes first: on any mismatch nothing is changed.
fn assign(model: &mut Model, saved: LayerWeights, by_name: bool, skip_mismatch: bool) -> Result<Vec<String>> {
    let mut values = model.get_weights();
    let targets: Vec<(String, std::ops::Range<usize>)> =
        model.arch.layers.iter().zip(&model.arch.weight_ranges).filter(|(_, r)| !r.is_empty()).map(|(l, r)| (l.name.clone(), r.clone())).collect();
    let saved: Vec<_> = saved.into_iter().filter(|(_, w)| !w.is_empty()).collect();
    let mut skipped = Vec::new();
    let pairs: Vec<(usize, &SavedLayer)> = if by_name {
        saved.iter().filter_map(|s| targets.iter().position(|(n, _)| *n == s.0).map(|t| (t, s))).collect()
    } else {
        if saved.len() != targets.len() {
            return Err(Error::Value(format!(
                "layer count mismatch when loading weights from file: the model has {} layers with weights, the file has {}",
                targets.len(),
                saved.len()
            )));
        }
        saved.iter().enumerate().collect()
    };
    for (t, (saved_name, weights)) in pairs {
        let (layer, range) = &targets[t];
        let mismatch = if weights.len() != range.len() {
            Some(format!("layer \"{}\" expects {} weights, but the saved layer \"{}\" has {}", layer, range.len(), saved_name, weights.len()))
        } else {
            range.clone().zip(weights).find(|(i, (_, v))| values[*i].shape != v.shape).map(|(i, (wname, v))| {
                format!(
                    "shape mismatch in layer \"{}\": weight \"{}\" has shape ({}) in the model but ({}) in the file (\"{}\")",
                    layer,
                    model.weights[i].name,
                    join_dims(&values[i].shape),
                    join_dims(&v.shape),
                    wname
                )
            })
        };
        match mismatch {
            Some(msg) if skip_mismatch => skipped.push(msg),
            Some(msg) => return Err(Error::Value(msg)),
            None => {
                for (i, (_, v)) in range.clone().zip(weights) {
                    values[i] = v.clone();
                }
            }
        }
    }
    model.set_weights(values)?;
    Ok(skipped)
}

/// `load_model_weights_hdf5()`: returns messages for layers skipped with `skip_mismatch`.
pub fn load_weights(path: &Path, model: &mut Model, by_name: bool, skip_mismatch: bool) -> Result<Vec<String>> {
    require_built(model, "loading weights into it")?;
    let file = open(path)?;
    let group = if file.link_exists("model_weights") { file.group("model_weights").map_err(h5err(path))? } else { file.group("/").map_err(h5err(path))? };
    let saved = read_saved_layers(&file, &group, &format!("\"{}\"", path.display()))?;
    // Keras 3 files are keyed by layer name (their order is not stored): match by name
    // when every layer of the model is there.
    let keyed_by_name = group.attr("layer_names").is_err()
        && model.arch.layers.iter().zip(&model.arch.weight_ranges).filter(|(_, r)| !r.is_empty()).all(|(l, _)| saved.iter().any(|(n, _)| *n == l.name));
    assign(model, saved, by_name || keyed_by_name, skip_mismatch)
}

/// `save_model_hdf5()`: architecture, weights and (optionally) the training setup and
/// optimizer state, in Keras 2's layout.
pub fn save_model(path: &Path, model: &Model, compiled: Option<&Compiled>, include_optimizer: bool, overwrite: bool) -> Result<()> {
    require_built(model, "saving")?;
    let config = model_config(model)?.to_string();
    let layers = layer_weights(model);
    write_atomically(path, overwrite, |tmp| {
        let file = File::create(tmp).map_err(h5err(tmp))?;
        let io = |e: hdf5::Error| Error::Io(e.to_string());
        write_str_attr(&file, "backend", "tensorflow").map_err(io)?;
        write_str_attr(&file, "keras_version", KERAS_VERSION).map_err(io)?;
        write_str_attr(&file, "model_config", &config).map_err(io)?;
        let weights = file.create_group("model_weights").map_err(io)?;
        write_weights_group(&weights, &layers)?;
        if let Some(c) = compiled {
            write_str_attr(&file, "training_config", &training_config(c).to_string()).map_err(io)?;
            if include_optimizer {
                write_optimizer(&file, model, &c.optimizer)?;
            }
        }
        file.close().map_err(h5err(tmp))
    })
}

/// `optimizer_weights/`: "iteration:0", then the slots in tf-keras's order and names
/// ("Adam/m/dense/kernel:0", ...).
fn write_optimizer(file: &File, model: &Model, opt: &Optimizer) -> Result<()> {
    let io = |e: hdf5::Error| Error::Io(e.to_string());
    let g = file.create_group("optimizer_weights").map_err(io)?;
    let prefix = opt.config.name();
    let slots = opt.slot_names();
    let trainable: Vec<usize> = (0..model.weights.len()).filter(|i| model.weights[*i].trainable).collect();
    let mut names = vec!["iteration:0".to_string()];
    let mut entries: Vec<(String, HostTensor)> = Vec::new();
    // Adam creates m and v together per variable; RMSprop and SGD one slot kind at a time.
    let interleaved = opt.slots_by_weight();
    let mut push = |slot: &(&str, usize), i: usize| {
        let w = &model.weights[i];
        let name = format!("{}/{}/{}", prefix, slot.0, w.name);
        entries.push((name.clone(), HostTensor { shape: w.shape.clone(), data: opt.slot(i, slot.1, w.value.len()) }));
        names.push(name);
    };
    if interleaved {
        for &i in &trainable {
            for s in &slots {
                push(s, i);
            }
        }
    } else {
        for s in &slots {
            for &i in &trainable {
                push(s, i);
            }
        }
    }
    write_str_list_attr(&g, "weight_names", &names)?;
    g.new_dataset::<i64>().create("iteration:0").and_then(|d| d.write_scalar(&(opt.iterations as i64))).map_err(io)?;
    for (name, value) in entries {
        let (dir, leaf) = name.rsplit_once('/').unwrap();
        let mut target = g.clone();
        for part in dir.split('/') {
            target = if target.link_exists(part) { target.group(part).map_err(io)? } else { target.create_group(part).map_err(io)? };
        }
        write_dataset(&target, leaf, &value)?;
    }
    Ok(())
}

/// A model read from a file, with its training setup and optimizer state when the file has
/// them: all read through one open of the file, so that a save racing with the load cannot
/// pair one checkpoint's weights with another's optimizer state.
pub struct LoadedModel {
    pub model: Model,
    pub training: Option<TrainingConfig>,
    pub optimizer_state: Option<SavedOptimizerState>,
}

/// `load_model_hdf5()`.
pub fn load_model(path: &Path) -> Result<LoadedModel> {
    let file = open(path)?;
    let config = read_str_attr(&file, "model_config")?.ok_or_else(|| {
        Error::Io(format!("\"{}\" has no model config: it holds weights only; build the model and use load_model_weights_hdf5()", path.display()))
    })?;
    let mut model = model_from_config(&config)?;
    let group = file.group("model_weights").map_err(|_| Error::Io(format!("\"{}\" has no `model_weights` group", path.display())))?;
    let saved = read_saved_layers(&file, &group, &format!("\"{}\"", path.display()))?;
    assign(&mut model, saved, false, false)?;
    let training = read_str_attr(&file, "training_config")?.map(|t| TrainingConfig::parse(&t)).transpose()?;
    let optimizer_state = if training.is_some() { read_optimizer_state(&file, path)? } else { None };
    Ok(LoadedModel { model, training, optimizer_state })
}

/// A file's optimizer state as read: the step count and each saved slot by name.
#[derive(Debug, Clone)]
pub struct SavedOptimizerState {
    pub iterations: u64,
    pub slots: Vec<(String, HostTensor)>,
}

/// The step count a file's optimizer state lists: tf-keras 2.x's `iteration:0`, or the legacy
/// optimizers' `Adam/iter:0`.
fn is_step_count(name: &str) -> bool {
    name == "iteration:0" || name.split_once('/').is_some_and(|(_, rest)| rest == "iter:0")
}

fn read_optimizer_state(file: &File, path: &Path) -> Result<Option<SavedOptimizerState>> {
    if !file.link_exists("optimizer_weights") {
        return Ok(None);
    }
    let g = file.group("optimizer_weights").map_err(h5err(path))?;
    let names = read_str_list_attr(&g, "weight_names", "optimizer_weights")?;
    let mut iterations = 0;
    let mut slots = Vec::new();
    for name in names {
        if is_step_count(&name) {
            let bad = || Error::Value(format!("\"{}\": optimizer_weights/{} must hold one integer >= 0 (the step count)", path.display(), name));
            let d = g.dataset(&name).map_err(|_| bad())?;
            // An integer dataset of one value (a float or string one is refused, not converted).
            if d.ndim() != 0 || !matches!(d.dtype().map_err(|_| bad())?.to_descriptor().map_err(|_| bad())?, hdf5::types::TypeDescriptor::Integer(_)) {
                return Err(bad());
            }
            iterations = u64::try_from(d.read_scalar::<i64>().map_err(|_| bad())?).map_err(|_| bad())?;
        } else {
            let value = read_dataset(&g, &name)?;
            slots.push((name, value));
        }
    }
    Ok(Some(SavedOptimizerState { iterations, slots }))
}

/// Restores a saved optimizer state into a compiled model's optimizer (after `compile()`).
/// Slots are matched by name, in tf-keras 2.x's layout (`Adam/m/dense/kernel:0`) or its
/// legacy optimizers' (`Adam/dense/kernel/m:0`).
pub fn restore_optimizer_state(state: &SavedOptimizerState, model: &Model, opt: &mut Optimizer) -> Result<()> {
    let prefix = opt.config.name();
    let slots = opt.slot_names();
    let lens: Vec<usize> = model.weights.iter().map(|w| w.value.len()).collect();
    let mut values: Vec<Vec<(usize, Vec<f32>)>> = vec![Vec::new(); model.weights.len()];
    let legacy_name = |slot: &'static str, weight: &str| format!("{}/{}/{}:0", prefix, weight.strip_suffix(":0").unwrap_or(weight), opt.legacy_slot_name(slot));
    for (name, t) in &state.slots {
        let found = model.weights.iter().enumerate().find_map(|(i, w)| {
            slots.iter().find(|s| *name == format!("{}/{}/{}", prefix, s.0, w.name) || *name == legacy_name(s.0, &w.name)).map(|s| (i, s.1))
        });
        let Some((i, slot)) = found else {
            // tf-keras creates some slots whatever the settings (SGD's `m` with momentum 0):
            // one of this optimizer's, for one of the model's weights, unused here, is
            // skipped; so is legacy Nadam's schedule product, remade from the step count.
            let unused_slot = name.strip_prefix(&format!("{}/", prefix)).is_some_and(|rest| {
                rest == "momentum_cache:0"
                    || model.weights.iter().any(|w| rest.ends_with(&format!("/{}", w.name)) || rest.starts_with(&format!("{}/", w.name.trim_end_matches(":0"))))
            });
            if unused_slot {
                continue;
            }
            return Err(Error::Value(format!("optimizer weight \"{}\" does not match this model and optimizer", name)));
        };
        if t.data.len() != lens[i] {
            return Err(Error::Value(format!("optimizer weight \"{}\" has {} values, the model's weight has {}", name, t.data.len(), lens[i])));
        }
        if let Some(at) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Value(format!(
                "optimizer weight \"{}\" holds NaN or infinite values (first at value {}): training would make every weight NaN; load the model with compile = FALSE and compile() it afresh",
                name,
                at + 1
            )));
        }
        values[i].push((slot, t.data.clone()));
    }
    opt.restore(state.iterations, &lens, values)
}

/// Restores `optimizer_weights/` of the file at `path` into a compiled model's optimizer.
/// Returns false when the file has no optimizer state.
pub fn load_optimizer_state(path: &Path, model: &Model, opt: &mut Optimizer) -> Result<bool> {
    let file = open(path)?;
    match read_optimizer_state(&file, path)? {
        Some(state) => restore_optimizer_state(&state, model, opt).map(|_| true),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_name_lists_go_in_keras_chunks_and_read_back() {
        let path = std::env::temp_dir().join(format!("rustgpu-chunks-{}.h5", std::process::id()));
        let names: Vec<String> = (0..9001).map(|i| format!("dense_{}", i)).collect();
        {
            let file = File::create(&path).unwrap();
            write_str_list_attr(&file, "layer_names", &names).unwrap();
            write_str_list_attr(&file, "short", &names[..3]).unwrap();
        }
        let file = File::open(&path).unwrap();
        // As Keras: `layer_names0`, `layer_names1`, `layer_names2`, no `layer_names`.
        assert!(file.attr("layer_names").is_err());
        assert!(file.attr("layer_names2").is_ok() && file.attr("layer_names3").is_err());
        assert_eq!(read_str_list_attr(&file, "layer_names", "test").unwrap(), names);
        assert_eq!(read_str_list_attr(&file, "short", "test").unwrap(), names[..3].to_vec());
        drop(file);
        let _ = std::fs::remove_file(&path);
    }
}
